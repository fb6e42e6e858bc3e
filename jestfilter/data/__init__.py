"""The data plane: WebDataset shards in, super-batches through, filtered shards and a manifest out."""

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
