"""What several jobs need: a model from a flag, the device of this rank, cached embeddings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from jestfilter.cli import UsageError
from jestfilter.data.embeddings import SUFFIX, cache_path
from jestfilter.models import ModelBundle, create_model
from jestfilter.models.factory import LOCAL_DIR


def load_model(spec: str, device: torch.device) -> ModelBundle:
    """A model folder (with or without ``local-dir:``) or a model name (random weights)."""
    if os.path.isdir(spec):
        spec = f"{LOCAL_DIR}{spec}"
    return create_model(spec, device=device)


def absolute(path: str | None) -> str | None:
    """A folder flag as an absolute path (a model name or ``None`` unchanged), for ``job.json``."""
    if path is None or not os.path.exists(path.removeprefix(LOCAL_DIR)):
        return path
    return os.path.abspath(path.removeprefix(LOCAL_DIR))


def job_device(name: str = "auto") -> torch.device:
    """``auto``: this process's GPU (torchrun's LOCAL_RANK, SLURM_LOCALID) if there is one, else CPU."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    return torch.device("cuda", local % torch.cuda.device_count())


class CachedEmbeddings(NamedTuple):
    """One shard's ``.emb.npz``: keys in file order, fp32 embeddings, the model's scale and bias."""

    keys: list[str]
    image: torch.Tensor
    text: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor


def load_embeddings(cache_dir: str | os.PathLike, shard: str) -> CachedEmbeddings:
    path = cache_path(cache_dir, shard)
    if not path.exists():
        raise FileNotFoundError(f"no embeddings for shard {shard} in {cache_dir}")
    with np.load(path) as data:
        as_tensor = lambda name: torch.from_numpy(data[name].astype(np.float32))  # noqa: E731
        return CachedEmbeddings(data["keys"].tolist(), as_tensor("image"), as_tensor("text"),
                                torch.tensor(float(data["scale"])), torch.tensor(float(data["bias"])))


def cached_shards(cache_dir: str | os.PathLike) -> list[str]:
    """The shard names an embedding folder covers (``web-000001.emb.npz`` → ``web-000001``)."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        raise UsageError(f"embedding folder {cache_dir} does not exist")
    stems = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}"))
    if not stems:
        raise UsageError(f"embedding folder {cache_dir} holds no *{SUFFIX} file")
    return stems
