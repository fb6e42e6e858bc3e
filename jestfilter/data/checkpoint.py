"""Save and restore the data plane's position (stream, shard writer, manifest) as one file.

The writer and manifest flush to disk inside ``state_dict()``, and the checkpoint replaces the
old one in one step, so after a crash the folder holds at least what the checkpoint says;
restoring cuts it back to exactly that, and the run goes on from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from jestfilter.data.atomic import atomic_torch_save
from jestfilter.data.loader import SuperBatchLoader
from jestfilter.data.manifest import Manifest
from jestfilter.data.writer import FilteredShardWriter


def save_data_state(path: str | os.PathLike, loader: SuperBatchLoader, writer: FilteredShardWriter,
                    manifest: Manifest, **extra: Any) -> None:
    """Write the three states (plus ``extra``, e.g. model and optimiser state) atomically."""
    state = {"writer": writer.state_dict(), "manifest": manifest.state_dict(), "loader": loader.state_dict()}
    atomic_torch_save(path, {**extra, "data": state})


def load_data_state(path: str | os.PathLike, loader: SuperBatchLoader, writer: FilteredShardWriter,
                    manifest: Manifest) -> dict | None:
    """Restore from ``path`` if it exists and return its ``extra`` entries; None on a fresh start."""
    if not Path(path).exists():
        return None
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint.pop("data")
    loader.load_state_dict(state["loader"])
    writer.load_state_dict(state["writer"])
    manifest.load_state_dict(state["manifest"])
    return checkpoint
