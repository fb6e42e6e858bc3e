"""What several jobs need: a model from a flag, and flags recorded as absolute paths."""

from __future__ import annotations

import os

import torch

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
