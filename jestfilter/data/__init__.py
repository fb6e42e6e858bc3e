"""The data plane: WebDataset shards in, super-batches through, filtered shards and a manifest out.

Every name is imported on first use, so a light module of the package (its options) can be
read without loading the heavy libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jestfilter.data.atomic import atomic_torch_save, atomic_write_json
    from jestfilter.data.loader import SuperBatchLoader
    from jestfilter.data.manifest import Manifest, read_manifest
    from jestfilter.data.shards import expand_shards, iter_samples
    from jestfilter.data.types import RawSample, Rejected, SuperBatch
    from jestfilter.data.writer import FilteredShardWriter

__all__ = [
    "FilteredShardWriter",
    "Manifest",
    "RawSample",
    "Rejected",
    "SuperBatch",
    "SuperBatchLoader",
    "atomic_torch_save",
    "atomic_write_json",
    "expand_shards",
    "iter_samples",
    "read_manifest",
]
_WHERE = {
    "FilteredShardWriter": "writer",
    "Manifest": "manifest",
    "RawSample": "types",
    "Rejected": "types",
    "SuperBatch": "types",
    "SuperBatchLoader": "loader",
    "atomic_torch_save": "atomic",
    "atomic_write_json": "atomic",
    "expand_shards": "shards",
    "iter_samples": "shards",
    "read_manifest": "manifest",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"jestfilter.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'jestfilter.data' has no attribute {name!r}")
