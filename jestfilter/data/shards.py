"""Shard patterns → raw samples, with every kind of damage turned into a ``Rejected`` record.

Key rule. A tar member ``NAME`` splits at its *last* dot into ``KEY.EXT``, so a dot inside the
key (``img.v2.jpg`` → key ``img.v2``) never splits a sample; webdataset's default splits at
the first dot instead. A member whose name starts with the current sample's key plus a dot
stays in that sample with the rest as its extension (``000001.ref.npy`` after
``000001.jpg`` → extension ``ref.npy``). Extensions keep their case so names round-trip.

Captions must be valid UTF-8: a caption that is not is rejected (``caption_not_utf8``), not
repaired, because a repaired caption would no longer match the bytes we write out.
"""

from __future__ import annotations

import glob
import io
import os
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlparse

import PIL.Image
from webdataset.gopen import gopen
from webdataset.shardlists import expand_urls
from webdataset.tariterators import tar_file_iterator

from jestfilter.data.types import Rejected, RawSample

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"

# Every reason a sample or shard can be rejected for (the manifest's ``reason`` column).
MISSING_SHARD = "missing_shard"
EMPTY_SHARD = "empty_shard"
UNREADABLE_SHARD = "unreadable_shard"
TRUNCATED_TAR = "truncated_tar"
UNSAFE_MEMBER_NAME = "unsafe_member_name"
DUPLICATE_MEMBER = "duplicate_member"
DUPLICATE_KEY = "duplicate_key"
MISSING_IMAGE = "missing_image"
EMPTY_IMAGE = "empty_image"
CORRUPT_IMAGE = "corrupt_image"
MISSING_CAPTION = "missing_caption"
EMPTY_CAPTION = "empty_caption"
CAPTION_NOT_UTF8 = "caption_not_utf8"


def expand_shards(patterns: str | Sequence[str]) -> list[str]:
    """Brace patterns (``web/web-{000000..000039}.tar``), globs, directories (their ``*.tar``)
    or URLs → the list of shards, in order.

    Raises ``FileNotFoundError`` when a local pattern matches no existing file and
    ``ValueError`` for an unreadable directory or an empty list. Some missing names in an
    otherwise matching brace range are kept: reading reports them as ``missing_shard``.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    shards: list[str] = []
    for pattern in map(str, patterns):
        names = expand_urls(pattern)
        if _is_remote(pattern):
            shards.extend(names)
            continue
        found = []
        for name in names:
            if os.path.isdir(name):
                found.extend(_tars_in(name))
            elif glob.has_magic(name):
                found.extend(sorted(glob.glob(name)))
            else:
                found.append(name)
        if not any(os.path.exists(name) for name in found):
            raise FileNotFoundError(f"shard pattern {pattern!r} matches no file")
        shards.extend(found)
    if not shards:
        raise ValueError("no shard pattern given")
    return shards


def _is_remote(url: str) -> bool:
    scheme = urlparse(url).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def _tars_in(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError as error:
        raise ValueError(f"cannot read directory {directory!r}: {error.strerror}") from None
    tars = sorted(os.path.join(directory, name) for name in names if name.endswith(".tar"))
    if not tars:
        raise FileNotFoundError(f"directory {directory!r} holds no .tar shard")
    return tars


def iter_samples(shards: Iterable[str]) -> Iterator[RawSample | Rejected]:
    """Every sample of every shard, checked: a ``RawSample`` that has a readable image header
    and a non-empty UTF-8 caption, or a ``Rejected`` saying why not."""
    for shard in shards:
        for item in iter_shard(shard):
            if isinstance(item, RawSample):
                reason = sample_problem(item)
                if reason:
                    item = Rejected(item.key, item.source_shard, reason)
            yield item


def iter_shard(shard: str) -> Iterator[RawSample | Rejected]:
    """Group one shard's members into samples by the key rule above (no content checks).

    A shard that is missing, empty or unreadable gives one ``Rejected`` with ``key=""``; a
    truncated tar keeps the complete samples read before the damage, rejects the sample cut
    in two and records the damage."""
    try:
        stream = gopen(shard)
    except FileNotFoundError:
        yield Rejected("", shard, MISSING_SHARD)
        return
    except OSError:
        yield Rejected("", shard, UNREADABLE_SHARD)
        return
    with stream:
        # webdataset's tar iterator calls the handler for a member it cannot read; the tar
        # stream is broken from there on, so stop and report it.
        errors: list[Exception] = []

        def stop(error: Exception) -> bool:
            errors.append(error)
            return False

        seen: set[str] = set()
        current: RawSample | None = None
        bad_current = ""
        members = 0
        try:
            for member in tar_file_iterator(stream, handler=stop):
                members += 1
                name = member["fname"]
                key, ext = split_member_name(name, current.key if current else None)
                if current is None or key != current.key:
                    if current is not None:
                        yield _finish(current, bad_current, seen)
                    current, bad_current = RawSample(key, shard, {}), ""
                if not key or not ext or "/" in name or "\\" in name:
                    bad_current = UNSAFE_MEMBER_NAME  # never used as a path; never written out
                elif ext in current.members:
                    bad_current = bad_current or DUPLICATE_MEMBER
                else:
                    current.members[ext] = member["data"]
        except Exception as error:  # tarfile's errors when the stream ends early or is garbage
            errors.append(error)
    if errors:
        if members == 0 and current is None:
            yield Rejected("", shard, EMPTY_SHARD if _is_empty(shard) else UNREADABLE_SHARD)
            return
        if current is not None:
            yield Rejected(current.key, shard, TRUNCATED_TAR)
        yield Rejected("", shard, TRUNCATED_TAR)
        return
    if current is not None:
        yield _finish(current, bad_current, seen)
    elif members == 0 and _is_empty(shard):
        yield Rejected("", shard, EMPTY_SHARD)


def split_member_name(name: str, current_key: str | None) -> tuple[str, str]:
    """(key, extension) of a member, by the key rule in the module docstring."""
    if current_key and name.startswith(current_key + "."):
        return current_key, name[len(current_key) + 1 :]
    key, _, ext = name.rpartition(".")
    return key, ext


def _finish(sample: RawSample, bad: str, seen: set[str]) -> RawSample | Rejected:
    if not bad and sample.key in seen:
        bad = DUPLICATE_KEY  # the key came back after other samples: not one sample any more
    seen.add(sample.key)
    return Rejected(sample.key, sample.source_shard, bad) if bad else sample


def _is_empty(shard: str) -> bool:
    try:
        return not _is_remote(shard) and os.path.getsize(urlparse(shard).path or shard) == 0
    except OSError:
        return False


def image_member(sample: RawSample) -> str | None:
    """The extension of the sample's image member, if it has one."""
    for ext in sample.members:
        if ext.lower() in IMAGE_EXTENSIONS:
            return ext
    return None


def sample_problem(sample: RawSample) -> str | None:
    """Cheap checks (no pixel decoding): the reason to reject ``sample``, or None."""
    ext = image_member(sample)
    if ext is None:
        return MISSING_IMAGE
    data = sample.members[ext]
    if not data:
        return EMPTY_IMAGE
    try:
        PIL.Image.open(io.BytesIO(data))  # reads the header only
    except Exception:
        return CORRUPT_IMAGE
    caption = sample.members.get(CAPTION_EXTENSION)
    if caption is None:
        return MISSING_CAPTION
    try:
        text = caption.decode("utf-8")
    except UnicodeDecodeError:
        return CAPTION_NOT_UTF8
    if not text.strip():
        return EMPTY_CAPTION
    return None


def caption_of(sample: RawSample) -> str:
    return sample.members[CAPTION_EXTENSION].decode("utf-8").strip()
