"""Kept samples → WebDataset shards, byte-for-byte, complete shards only, resumable.

webdataset's ``TarWriter`` drives tarfile in stream mode, which keeps the last few KB in its
own buffer; a checkpoint needs the exact offset of the last complete sample on disk, so this
writer drives tarfile in seekable mode instead: after each sample ``tar.offset`` is the end of
that sample, and resuming truncates the temporary shard there and appends.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Iterable

from jestfilter.data.atomic import WriteFailed
from jestfilter.data.layout import SIZES, SUCCESS, mark_complete
from jestfilter.data.options import SAMPLES_PER_SHARD
from jestfilter.data.shards import iter_samples, split_member_name, unsafe_key
from jestfilter.data.types import RawSample


class FilteredShardWriter:
    """Write ``RawSample``s into ``{prefix}-{i:06d}.tar`` shards of at most ``samples_per_shard``.

    A shard is filled under a hidden temporary name and renamed when complete, so readers
    never see a partial shard. Members are written as read, sorted by extension, with a fixed
    ``mtime``, so equal input gives equal tars. A sample is its (source shard, key): it is
    written at most once (writing it again writes nothing and returns the shard that holds
    it), and two samples with the same key from different shards are both written, never
    into the same tar (a reader would merge them): a key already in the open shard, or one the
    reader's key rule would join to the previous sample (``a`` then ``a.b``), closes it early.
    ``close()`` writes the last shard, ``sizes.json`` (``{"shard.tar": n}``, as
    open_clip_train reads it) and ``_SUCCESS``.
    """

    def __init__(self, out_dir: str | os.PathLike, samples_per_shard: int = SAMPLES_PER_SHARD,
                 prefix: str = "filtered", mtime: int = 0):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be positive, got {samples_per_shard}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.samples_per_shard, self.prefix, self.mtime = samples_per_shard, prefix, mtime
        self.shard = 0  # index of the shard being filled
        self.count = 0  # samples in it
        self.sizes: dict[str, int] = {}  # finished shards: samples
        self.bytes: dict[str, int] = {}  # finished shards: file sizes, checked on resume
        self.sha256: dict[str, str] = {}  # finished shards: digests, checked on resume (a flipped byte)
        self.closed = False
        self._where: dict[tuple[str, str], int] = {}  # (source shard, key) → shard index
        self._open_keys: dict[str, None] = {}  # keys in the shard being filled, in order
        self._by_key: dict[str, int] = {}  # key → shard index, after a resume without sources
        self._file = None
        self._tar: tarfile.TarFile | None = None
        self._fresh = True  # neither written to nor resumed yet

    def name(self, index: int) -> str:
        return f"{self.prefix}-{index:06d}.tar"

    def _tmp(self, index: int) -> Path:
        return self.out_dir / f".{self.name(index)}.tmp"

    def write(self, sample: RawSample) -> str:
        """Append ``sample``; return the name of the shard that holds it."""
        uid = (sample.source_shard, sample.key)
        if uid in self._where:
            return self.name(self._where[uid])
        if sample.key in self._by_key:  # resumed without knowing the sources: by key alone
            return self.name(self._by_key[sample.key])
        if unsafe_key(sample.key):
            raise ValueError(f"unsafe sample key {sample.key!r}: it would become a path when untarred")
        if self.closed:
            raise ValueError("writer is closed")
        if self._fresh:
            self._refuse_old_output()
        if self._would_merge(sample.key):
            self._finish_shard()
        if self._tar is None:
            self._open(offset=0)
        try:
            for ext in sorted(sample.members):
                data = sample.members[ext]
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mtime, info.mode = len(data), self.mtime, 0o444
                self._tar.addfile(info, io.BytesIO(data))
        except OSError as error:  # a full disk: the checkpoint's offset still marks the last good sample
            raise WriteFailed(self._tmp(self.shard), error.strerror or str(error)) from error
        self._where[uid] = self.shard
        self._open_keys[sample.key] = None
        name = self.name(self.shard)
        self.count += 1
        if self.count == self.samples_per_shard:
            self._finish_shard()
        return name

    def _would_merge(self, key: str) -> bool:
        """A reader of the open shard would take ``key`` for (part of) a sample already in it."""
        last = next(reversed(self._open_keys), None)
        return key in self._open_keys or (last is not None and key.startswith(last + "."))

    def close(self, summary: bool = True) -> None:
        """Finish the last shard, then write ``sizes.json`` and ``_SUCCESS`` (in that order).
        ``summary=False`` leaves those two out: with a writer per rank, rank 0 writes them once
        for all ranks' shards (``jestfilter.data.layout.mark_complete``)."""
        if self.closed:
            return
        if self._fresh:
            self._refuse_old_output()
        if self.count:
            self._finish_shard()
        if summary:
            mark_complete(self.out_dir, self.sizes)
        self.closed = True

    def state_dict(self) -> dict:
        """Flush to disk and return the position; everything up to it survives a crash."""
        offset = 0
        if self._tar is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            offset = self._tar.offset
        return {"shard": self.shard, "count": self.count, "offset": offset, "sizes": dict(self.sizes),
                "bytes": dict(self.bytes), "sha256": dict(self.sha256), "closed": self.closed,
                "samples_per_shard": self.samples_per_shard}

    def load_state_dict(self, state: dict, written: Iterable[tuple[str, str, str]] | None = None,
                        check: bool = True) -> None:
        """Make the folder match ``state``: drop shards begun after it, cut the open shard back
        to its offset (un-renaming it if it was finished after the checkpoint). Refuses, with
        ``ValueError``, a folder that lost or changed a shard the checkpoint counts on
        (``check=False``: the caller ran ``check_state`` already).

        ``written``: (source shard, key, output shard name) of every sample the folder holds
        (the manifest's kept rows), so a sample is still written once after the resume;
        without it, the shards' keys are matched by key alone."""
        if check:
            self.check_state(state)
        self._close_file()
        self.shard, self.count, self.closed = state["shard"], state["count"], state["closed"]
        self.sizes, self.bytes = dict(state["sizes"]), dict(state.get("bytes", {}))
        self.sha256 = dict(state.get("sha256", {}))
        for path in self.out_dir.glob(f"*{self.prefix}-*.tar*"):
            index = _shard_index(path.name, self.prefix)
            if index is not None and (index > self.shard or (index == self.shard and not self.count)):
                path.unlink()
        if self.count:
            tmp, final = self._tmp(self.shard), self.out_dir / self.name(self.shard)
            if final.exists():
                os.replace(final, tmp)
            self._open(offset=state["offset"])
        if not self.closed:
            for name in (SIZES, SUCCESS):
                (self.out_dir / name).unlink(missing_ok=True)
        self._open_keys = _keys_in(self._tmp(self.shard)) if self.count else {}
        held = range(self.shard + (1 if self.count else 0))
        if written is not None:
            index = {self.name(i): i for i in held}
            self._where = {(source, key): index[name] for source, key, name in written if name in index}
        else:
            self._where = {}
            self._by_key = {key: i for i in held for key in _keys_in(self._path_of(i))}
        self._fresh = False

    def _path_of(self, index: int) -> Path:
        return self._tmp(index) if index == self.shard else self.out_dir / self.name(index)

    def check_state(self, state: dict) -> None:
        """The checkpoint was made with these settings, every shard it counts as finished is
        there with its size and SHA-256, and the open one holds at least what was flushed; else
        ``ValueError``."""
        made = state.get("samples_per_shard", self.samples_per_shard)
        if made != self.samples_per_shard:
            raise ValueError(f"cannot resume: the checkpoint wrote {made:,} samples per shard, not "
                             f"{self.samples_per_shard:,}; give the same setting or start in a new folder")
        for name, count in state["sizes"].items():
            path = self.out_dir / name
            what = _changed(path, state.get("bytes", {}).get(name), state.get("sha256", {}).get(name))
            if what:
                raise ValueError(f"cannot resume: {path} {what} (the checkpoint counts {count:,} samples "
                                 "in it); restore it or start in a new folder")
        if state["count"]:
            tmp, final = self._tmp(state["shard"]), self.out_dir / self.name(state["shard"])
            found = max((p.stat().st_size for p in (tmp, final) if p.exists()), default=None)
            if found is None or found < state["offset"]:
                raise ValueError(f"cannot resume: {tmp} is missing or shorter than the checkpoint's "
                                 f"{state['offset']:,} bytes; restore it or start in a new folder")

    def _open(self, offset: int) -> None:
        path = self._tmp(self.shard)
        self._file = open(path, "r+b" if offset else "wb")
        self._file.truncate(offset)
        self._file.seek(offset)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self._fresh = False

    def _finish_shard(self) -> None:
        self._tar.close()  # end-of-archive blocks
        self._file.flush()
        os.fsync(self._file.fileno())
        self._close_file()
        name = self.name(self.shard)
        os.replace(self._tmp(self.shard), self.out_dir / name)
        self.sizes[name] = self.count
        self.bytes[name] = (self.out_dir / name).stat().st_size
        self.sha256[name] = _sha256(self.out_dir / name)  # read back once, from the page cache
        self.shard, self.count = self.shard + 1, 0
        self._open_keys = {}

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._tar = None, None

    def _refuse_old_output(self) -> None:
        old = [p.name for p in self.out_dir.glob(f"{self.prefix}-*.tar")] + [
            n for n in (SIZES, SUCCESS) if (self.out_dir / n).exists()]
        if old:
            raise ValueError(f"{self.out_dir} already holds output ({sorted(old)[0]}, ...): "
                             "use a new folder or resume from the run's checkpoint")
        self._fresh = False


def copy_from_sources(writer: FilteredShardWriter, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Write the samples ``wanted`` names by (source shard, key), read again from their shards
    and copied byte-for-byte; returns the output shard of each one written (a sample that can
    no longer be read there is left out)."""
    written: dict[tuple[str, str], str] = {}
    for shard in sorted({shard for shard, _ in wanted}):
        for item in iter_samples([shard]):
            uid = (item.source_shard, item.key)
            if isinstance(item, RawSample) and uid in wanted and uid not in written:
                written[uid] = writer.write(item)
    return written


def _changed(path: Path, size: int | None, digest: str | None) -> str | None:
    """How a finished shard differs from what a checkpoint saw (its size, then its SHA-256;
    either may be unknown to an older checkpoint), or None."""
    if not path.exists():
        return "is missing"
    found = path.stat().st_size
    if size is not None and found != size:
        return f"holds {found:,} bytes, not {size:,}"
    if digest is not None and _sha256(path) != digest:
        return "is not the file the checkpoint saw (its SHA-256 differs)"
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _shard_index(filename: str, prefix: str) -> int | None:
    stem = filename.lstrip(".").removesuffix(".tmp").removesuffix(".tar")
    number = stem.removeprefix(f"{prefix}-")
    return int(number) if number != stem and number.isdigit() else None


def _keys_in(path: Path) -> dict[str, None]:
    """Sample keys of a shard this writer wrote, in order, split by the reader's key rule."""
    keys: dict[str, None] = {}
    if path.exists():
        key = None
        with tarfile.open(path, mode="r:") as tar:
            for name in tar.getnames():
                key = split_member_name(name, key)[0]
                keys[key] = None
    return keys
