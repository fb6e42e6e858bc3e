"""img2dataset's shard layout: shard names, sample keys, brace patterns, ``sizes.json`` and ``_SUCCESS``.

img2dataset names shard ``s`` ``{s:05d}.tar`` and gives sample ``i`` of that shard the key
``s * 10**ceil(log10(samples_per_shard)) + i``, zero-padded to ``5 + ceil(log10(...))`` digits
(9 digits at its default of 10,000 samples per shard). Shards we write follow the same rules,
so the demo data and ingested data look alike to every reader.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from jestfilter.data.atomic import atomic_write, atomic_write_json

SHARD_DIGITS = 5  # img2dataset's default oom_shard_count
SIZES = "sizes.json"  # shard file name → sample count, which open_clip_train reads
SUCCESS = "_SUCCESS"  # written last: every shard of the folder is complete


def shard_stem(shard: str) -> str:
    """``.../web-000012.tar`` → ``web-000012`` (the name every per-shard output starts with)."""
    name = os.path.basename(shard.rstrip("/"))
    return name[: -len(".tar")] if name.endswith(".tar") else name


def shard_name(shard: int) -> str:
    """File name of shard ``shard``: ``00042.tar``."""
    return f"{shard:0{SHARD_DIGITS}d}.tar"


def sample_key(shard: int, index: int, samples_per_shard: int) -> str:
    """img2dataset's key for sample ``index`` of shard ``shard``."""
    index_digits = math.ceil(math.log10(samples_per_shard)) if samples_per_shard > 1 else 0
    return f"{shard * 10**index_digits + index:0{SHARD_DIGITS + index_digits}d}"


def brace_pattern(folder: str | Path, names: list[str]) -> str:
    """A brace pattern naming exactly ``names`` (shard file names) inside ``folder``.

    Contiguous numbered names give ``folder/{00000..00039}.tar``; anything else is listed.
    """
    if not names:
        raise ValueError(f"no shards in {folder}")
    names = sorted(names)
    stems = [name[: -len(".tar")] for name in names]
    if len(names) == 1:
        return str(Path(folder) / names[0])
    numbered = all(stem.isdigit() and len(stem) == len(stems[0]) for stem in stems)
    if numbered and int(stems[-1]) - int(stems[0]) == len(stems) - 1:
        return f"{Path(folder)}/{{{stems[0]}..{stems[-1]}}}.tar"
    return f"{Path(folder)}/{{{','.join(stems)}}}.tar"


def write_sizes_json(folder: str | Path, sizes: dict[str, int]) -> None:
    """``sizes.json`` (shard file name → sample count, sorted), which open_clip_train reads."""
    atomic_write_json(Path(folder) / SIZES, dict(sorted(sizes.items())))


def known_sizes(shards: list[str]) -> dict[str, int]:
    """Sample counts of the local ``shards`` that a ``sizes.json`` beside them lists (a file
    that is not a JSON object of counts is left out: it is only a hint)."""
    sizes: dict[str, int] = {}
    for folder in {os.path.dirname(shard) for shard in shards if "://" not in shard}:
        try:
            listed = json.loads((Path(folder) / SIZES).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(listed, dict):
            continue
        sizes.update({os.path.join(folder, name): n for name, n in listed.items() if isinstance(n, int)})
    return {shard: sizes[shard] for shard in shards if shard in sizes}


def mark_complete(folder: str | Path, sizes: dict[str, int]) -> None:
    """``sizes.json`` for the folder's finished shards, then the ``_SUCCESS`` marker."""
    write_sizes_json(folder, sizes)
    atomic_write(Path(folder) / SUCCESS, lambda tmp: Path(tmp).write_text(""))
