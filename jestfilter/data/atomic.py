"""Writes that are all-or-nothing: a reader (or a restarted run) sees the old file or the new
one, never half of one. Each writes a temporary file of its own (named by process) in the same
folder, then ``os.replace``s it.
A write that fails (a full disk, a read-only folder) removes its temporary file and raises
``WriteFailed``: one line saying what could not be written and why."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import torch


class WriteFailed(OSError):
    """A file that could not be written; ``str()`` is one line: the path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot write {path}: {reason}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], tmp_dir: str | os.PathLike | None = None
                 ) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one step. The temporary
    file sits beside ``path``, or in ``tmp_dir`` (on the same filesystem): a folder that
    readers take whole, such as a parquet dataset, must never hold a half-written file."""
    path = Path(path)
    # writers in other processes (ranks) race apart by pid
    tmp = (path.with_name(f".{path.name}.{os.getpid()}.tmp") if tmp_dir is None else
           Path(tmp_dir) / f".{path.parent.name}-{path.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as handle:  # the data must be on disk before the rename is
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except Exception as error:  # OSError, torch's RuntimeError, polars' errors: all say "not written"
        reason = why_not_written(tmp, error)
        tmp.unlink(missing_ok=True)
        raise WriteFailed(path, reason) from error
    except BaseException:  # a stop (SIGTERM, Ctrl-C) in the middle: no temporary file left behind
        tmp.unlink(missing_ok=True)
        raise


def why_not_written(tmp: str | os.PathLike, error: Exception) -> str:
    """What the filesystem said. torch (a RuntimeError of its zip writer) and safetensors (a
    SafetensorError) report a failed write in their own words: the system's reason is the
    ``(os error N)`` a Rust writer names, or what writing a little more to the same file gets."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    named = re.search(r"\(os error (\d+)\)", str(error))
    if named:
        return os.strerror(int(named.group(1)))
    try:
        with open(tmp, "ab") as handle:
            handle.write(bytes(1 << 16))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as probe:
        return probe.strerror or str(probe)
    return str(error).splitlines()[0] if str(error) else type(error).__name__


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
