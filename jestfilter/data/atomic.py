"""Writes that are all-or-nothing: a reader (or a restarted run) sees the old file or the new
one, never half of one. Each writes a temporary file in the same folder, then ``os.replace``s it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    with open(tmp, "rb+") as handle:  # the data must be on disk before the rename is
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (sorted keys, so equal objects give equal files)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=1, sort_keys=True)
            handle.write("\n")

    atomic_write(path, write)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` that never leaves a torn checkpoint (load it with ``weights_only=True``)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
