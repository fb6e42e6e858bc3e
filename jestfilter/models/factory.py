"""open_clip models by name: our small configs, any open_clip config, or a ``local-dir:`` folder.

Every model is a SigLIP model (it has a learnable ``logit_bias``) and uses open_clip's bundled
SimpleTokenizer, so nothing is downloaded. ``save_local_dir`` writes the folder format that
``open_clip.create_model("local-dir:PATH")`` reads.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import open_clip
import torch
from safetensors.torch import save_file

from jestfilter.models.options import LOCAL_DIR
from jestfilter.models.preprocess import ImagePreprocess

CONFIG_DIR = Path(__file__).parent / "configs"
OUR_MODELS = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

# open_clip_train --siglip: logit scale ln 10 (scale 10), bias -10 (Zhai et al. 2023).
SIGLIP_INIT = {"init_logit_scale": math.log(10.0), "init_logit_bias": -10.0}

open_clip.add_model_config(CONFIG_DIR)


class ModelBundle(NamedTuple):
    """A model with the transforms that feed it."""

    model: torch.nn.Module
    preprocess: ImagePreprocess  # uint8 pixels -> model inputs, batched (also PIL image -> [3, H, W])
    tokenizer: Callable  # list[str] -> [n, context_length] token ids
    name: str


def logit_bias_for_batch(batch_size: int) -> float:
    """Bias at which sigmoid(bias) = 1/batch_size, the share of positive pairs (open_clip#650)."""
    if batch_size < 2:
        raise ValueError(f"batch size must be at least 2 for a batch-sized bias, got {batch_size}")
    p = 1.0 / batch_size
    return math.log(p / (1.0 - p))


def create_model(
    name_or_local_dir: str,
    device: str | torch.device = "cpu",
    bias_for_batch_size: int | None = None,
    pixel_stats: tuple[Sequence[float], Sequence[float]] | None = None,
    **overrides: Any,
) -> ModelBundle:
    """Build a randomly initialised SigLIP model by name, or load a model folder (``local-dir:PATH``
    or a plain ``PATH``, as ``save_local_dir`` writes it).

    ``overrides`` go to ``open_clip.create_model`` (config keys such as ``init_logit_bias``,
    or its ``force_*`` options). ``bias_for_batch_size=n`` starts the bias at log(1/(n-1))
    instead of -10 (see ``logit_bias_for_batch``). ``pixel_stats=(mean, std)`` normalises the
    new model's inputs with them instead of CLIP's (``jestfilter.models.normalise``); the
    model folder keeps them in its ``preprocess_cfg``.
    """
    name = model_spec(name_or_local_dir)
    if name.startswith(LOCAL_DIR):
        if bias_for_batch_size is not None or pixel_stats is not None:
            raise ValueError("bias_for_batch_size and pixel_stats initialise a new model; a local-dir model is "
                             "loaded as saved")
        folder = Path(name[len(LOCAL_DIR):])
        if not (folder / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"not a model folder (no {CONFIG_FILE}): {folder}")
        model_cfg = json.loads((folder / CONFIG_FILE).read_text()).get("model_cfg")
        if not isinstance(model_cfg, dict):
            raise ValueError(f"{folder / CONFIG_FILE} has no model_cfg")
        kwargs = dict(overrides)
    else:
        model_cfg = open_clip.get_model_config(name)
        if model_cfg is None:
            raise ValueError(
                f"unknown model {name!r}: use one of {', '.join(OUR_MODELS)}, an open_clip model name, "
                f"or {LOCAL_DIR}PATH"
            )
        kwargs = {**SIGLIP_INIT, **overrides}
        if bias_for_batch_size is not None:
            kwargs["init_logit_bias"] = logit_bias_for_batch(bias_for_batch_size)
        if pixel_stats is not None:
            mean, std = pixel_stats
            kwargs["force_preprocess_cfg"] = {"mean": tuple(mean), "std": tuple(std)}
    with _without_random_init_warning():
        model = open_clip.create_model(name, device=device, **kwargs)
    model.eval()
    model.jest_model_cfg = _resolved_config(model_cfg, kwargs)
    tokenizer = open_clip.get_tokenizer(name)
    return ModelBundle(model, ImagePreprocess.of(model), tokenizer, name)


def start_model(name_or_folder: str, seed: int, batch_size: int, device: str | torch.device = "cpu",
                pixel_stats: tuple[Sequence[float], Sequence[float]] | None = None) -> ModelBundle:
    """The model a run trains: a model folder (``DIR`` or ``local-dir:DIR``) continues from its
    saved weights and normalisation; a model name starts from ``seed`` with its logit bias at
    log(1/(b−1)) for the batch size b, not −10 (at small b it learns faster: docs/benchmarks.md),
    and normalises its pixels with ``pixel_stats`` (None: CLIP's)."""
    torch.manual_seed(seed)
    spec = model_spec(name_or_folder)
    fresh = {} if spec.startswith(LOCAL_DIR) else {"bias_for_batch_size": batch_size, "pixel_stats": pixel_stats}
    return create_model(spec, device=device, **fresh)


def input_size(name_or_folder: str) -> int:
    """The side of a model's square input, from its config (no model is built)."""
    spec = model_spec(name_or_folder)
    if spec.startswith(LOCAL_DIR):
        config = json.loads((Path(spec[len(LOCAL_DIR):]) / CONFIG_FILE).read_text())["model_cfg"]
    else:
        config = open_clip.get_model_config(spec)
        if config is None:
            raise ValueError(f"unknown model {spec!r}: use one of {', '.join(OUR_MODELS)}, an open_clip model name, "
                             f"or {LOCAL_DIR}PATH")
    size = config["vision_cfg"]["image_size"]
    return size if isinstance(size, int) else size[0]


def model_spec(name_or_folder: str) -> str:
    """A folder, with or without ``local-dir:``, as ``local-dir:PATH``; a model name unchanged."""
    if not name_or_folder.startswith(LOCAL_DIR) and os.path.isdir(name_or_folder):
        return f"{LOCAL_DIR}{name_or_folder}"
    return name_or_folder


@contextlib.contextmanager
def _without_random_init_warning():
    """open_clip warns "No pretrained weights loaded" for every new model: that is our normal case."""
    def drop(record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _resolved_config(model_cfg: dict, kwargs: dict) -> dict:
    """The config the model was built from, with the overrides applied (what we save)."""
    cfg = copy.deepcopy(model_cfg)
    force = {
        "force_image_size": ("vision_cfg", "image_size"),
        "force_patch_dropout": ("vision_cfg", "patch_dropout"),
        "force_context_length": ("text_cfg", "context_length"),
    }
    config_keys = inspect.signature(open_clip.CLIP).parameters.keys() - {"cast_dtype", "output_dict"}
    for key, value in kwargs.items():
        if key in force and value is not None:
            tower, field = force[key]
            cfg[tower][field] = value
        elif key == "force_quick_gelu" and value:
            cfg["quick_gelu"] = True
        elif key in config_keys:
            cfg[key] = value
    return cfg


def save_local_dir(bundle_or_model: ModelBundle | torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``open_clip_config.json`` + ``open_clip_model.safetensors`` into ``path``.

    The folder appears complete or not at all: it is written under a temporary name beside
    ``path`` and renamed into place (an existing folder is replaced).
    """
    model = bundle_or_model.model if isinstance(bundle_or_model, ModelBundle) else bundle_or_model
    model_cfg = getattr(model, "jest_model_cfg", None)
    if model_cfg is None:
        raise ValueError("model was not made by jestfilter.models.create_model: its config is unknown")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        temp.mkdir()  # not tempfile.mkdtemp: its 0700 would hide the model from the user's group (umask applies)
        (temp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        save_file(state, temp / WEIGHTS_FILE)
        os.chmod(temp / WEIGHTS_FILE, 0o666 & ~_umask())  # safetensors creates it 0600
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old)
        else:
            os.replace(temp, path)
    except Exception as error:  # a full disk: OSError, or safetensors' own SafetensorError; one line either way
        from jestfilter.data.atomic import WriteFailed, why_not_written  # polars and webdataset: only when needed

        reason = why_not_written(temp / WEIGHTS_FILE, error) if temp.is_dir() else why_not_written(temp, error)
        shutil.rmtree(temp, ignore_errors=True)
        raise WriteFailed(path, reason) from error
    except BaseException:  # a stop: no temporary folder left behind
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return path


def weights_digest(bundle_or_model: ModelBundle | torch.nn.Module) -> str:
    """SHA-256 of what makes a model's embeddings: every tensor of its state dict (name, dtype,
    shape, bytes, on the CPU) and its preprocessing (image size, mean, std). Two models with the
    same logit scale and bias but other weights differ here; a model saved and loaded again does not."""
    model = bundle_or_model.model if isinstance(bundle_or_model, ModelBundle) else bundle_or_model
    digest = hashlib.sha256(json.dumps(open_clip.get_model_preprocess_cfg(model), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
