"""What several jobs need: flags recorded as absolute paths, a learner's embeddings of a shard."""

from __future__ import annotations

import os
from pathlib import Path

from jestfilter.embeddings import CachedEmbeddings, cache_path, embed_shard, load_embeddings, read_embeddings
from jestfilter.models import ModelBundle
from jestfilter.models.options import LOCAL_DIR

LEARNER_CACHE = "learner-embeddings"


def absolute(path: str | None) -> str | None:
    """A folder flag as an absolute path (a model name or ``None`` unchanged), for ``job.json``."""
    if path is None or not os.path.exists(path.removeprefix(LOCAL_DIR)):
        return path
    return os.path.abspath(path.removeprefix(LOCAL_DIR))


def learner_embeddings(learner: ModelBundle, shard: str, out_dir: str | os.PathLike,
                       batch_size: int = 256) -> CachedEmbeddings:
    """The learner's embeddings of ``shard``, cached under ``out_dir/learner-embeddings`` in the
    embed job's format, so a retried or resumed shard is not embedded twice."""
    folder = Path(out_dir) / LEARNER_CACHE
    folder.mkdir(parents=True, exist_ok=True)
    path = cache_path(folder, shard)
    if not (path.exists() and read_embeddings(path, arrays=False).made_from(shard)):  # missing, or of another file
        embed_shard(learner, shard, path, batch_size)
    return load_embeddings(folder, shard)
