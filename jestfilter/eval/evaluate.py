"""Evaluate a model on an eval set: zero-shot top-1 and image↔text retrieval R@1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jestfilter.eval.dataset import EvalSet, load_eval_set
from jestfilter.eval.metrics import retrieval_class_r1, retrieval_r1, zeroshot_top1
from jestfilter.models import ModelBundle
from jestfilter.models.flexi import encode_image


def evaluate(
    bundle: ModelBundle,
    eval_set: EvalSet | str | Path,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    patch_size: int | None = None,
) -> dict[str, float]:
    """Metrics of ``bundle`` on ``eval_set`` (an ``EvalSet``, or a directory read once here).

    Pass a loaded ``EvalSet`` when evaluating repeatedly: its decoded images are reused.
    ``device`` moves the model there (default: where it is). ``patch_size`` evaluates the image
    tower at a Flexi patch size.
    """
    if not isinstance(eval_set, EvalSet):
        eval_set = load_eval_set(eval_set)
    model = bundle.model if device is None else bundle.model.to(device)
    device = model.logit_scale.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            images = _batched(lambda x: encode_image(model, bundle.preprocess.to_model(x, device), patch_size,
                                                     normalize=True), eval_set.images, batch_size)
            texts = _encode_texts(bundle, eval_set.captions, batch_size, device)
            prompts = [template.format(name) for name in eval_set.classnames for template in eval_set.templates]
            classes = _encode_texts(bundle, prompts, batch_size, device)
    finally:
        model.train(was_training)
    # CLIP's prompt ensembling: average the normalised template embeddings of each class.
    classes = classes.reshape(len(eval_set.classnames), len(eval_set.templates), -1).mean(axis=1)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    i2t = retrieval_r1(images, texts, eval_set.captions)
    t2i = retrieval_r1(texts, images, eval_set.captions)
    labels = eval_set.labels
    class_i2t, class_t2i = retrieval_class_r1(images, texts, labels), retrieval_class_r1(texts, images, labels)
    return {
        "zeroshot_top1": zeroshot_top1(images, classes, labels),
        "retrieval_i2t_r1": i2t,
        "retrieval_t2i_r1": t2i,
        "retrieval_r1": (i2t + t2i) / 2,
        "retrieval_class_r1": (class_i2t + class_t2i) / 2,
        "chance": 1 / len(eval_set.classnames),  # zero-shot top-1 of a guess
    }


def _encode_texts(bundle: ModelBundle, texts: list[str], batch_size: int, device: torch.device) -> np.ndarray:
    tokens = bundle.tokenizer(texts)
    return _batched(lambda x: bundle.model.encode_text(x.to(device), normalize=True), tokens, batch_size)


def _batched(encode, inputs, batch_size: int) -> np.ndarray:
    parts = [encode(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return torch.cat(parts).float().cpu().numpy()
