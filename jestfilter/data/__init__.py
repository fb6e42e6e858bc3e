"""The data plane: WebDataset shards in, super-batches through, filtered shards and a manifest out.

Every name is imported on first use, so a light module of the package (its options) can be
read without loading the heavy libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jestfilter.lazy import lazy_names

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
    **dict.fromkeys(("atomic_torch_save", "atomic_write_json"), "atomic"),
    **dict.fromkeys(("SuperBatchLoader",), "loader"),
    **dict.fromkeys(("Manifest", "read_manifest"), "manifest"),
    **dict.fromkeys(("expand_shards", "iter_samples"), "shards"),
    **dict.fromkeys(("RawSample", "Rejected", "SuperBatch"), "types"),
    **dict.fromkeys(("FilteredShardWriter",), "writer"),
}

__getattr__ = lazy_names(__name__, _WHERE)
