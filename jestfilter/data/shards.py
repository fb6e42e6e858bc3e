"""Shard patterns → raw samples, with every kind of damage turned into a ``Rejected`` record.

Key rule. A tar member ``NAME`` splits at its *last* dot into ``KEY.EXT``, so a dot inside the
key (``img.v2.jpg`` → key ``img.v2``) never splits a sample; webdataset's default splits at
the first dot instead. A member whose name starts with the current sample's key plus a dot
stays in that sample with the rest as its extension (``000001.ref.npy`` after
``000001.jpg`` → extension ``ref.npy``). Extensions keep their case so names round-trip.

Captions must be valid UTF-8: a caption that is not is rejected (``caption_not_utf8``), not
repaired, because a repaired caption would no longer match the bytes we write out.

Hostile input. A shard path that is not a regular file (a FIFO, a device) is never opened;
gzip, bzip2 and xz shards are decompressed as a stream; a member over the size cap
(``jestfilter.data.limits``) is skipped unread; links and devices inside a tar are never
followed. Each of these rejects its sample (or shard) with a reason, and reading goes on.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import re
import stat
import tarfile
import zlib
from collections import deque
from typing import BinaryIO, Iterable, Iterator, Sequence
from urllib.parse import urlparse

from webdataset.gopen import gopen, gopen_schemes
from webdataset.shardlists import expand_urls

from jestfilter.data.limits import EXTENDED_HEADER_BYTES, max_sample_bytes
from jestfilter.data.types import Rejected, RawSample

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"

# Every reason the reader can reject a sample or shard for (the manifest's ``reason`` column;
# docs/data.md says what each means and what to do about it).
MISSING_SHARD = "missing_shard"
NOT_A_FILE = "not_a_file"
EMPTY_SHARD = "empty_shard"
UNREADABLE_SHARD = "unreadable_shard"
TRUNCATED_TAR = "truncated_tar"
TRAILING_GARBAGE = "trailing_garbage"
UNSAFE_MEMBER_NAME = "unsafe_member_name"
MEMBER_NAME_NOT_UTF8 = "member_name_not_utf8"
SPECIAL_MEMBER = "special_member"
MEMBER_TOO_LARGE = "member_too_large"
DUPLICATE_MEMBER = "duplicate_member"
DUPLICATE_KEY = "duplicate_key"
MISSING_IMAGE = "missing_image"
EMPTY_IMAGE = "empty_image"
CORRUPT_IMAGE = "corrupt_image"
IMAGE_TOO_LARGE = "image_too_large"
MISSING_CAPTION = "missing_caption"
EMPTY_CAPTION = "empty_caption"
CAPTION_NOT_UTF8 = "caption_not_utf8"

# The shard gave nothing at all: a batch job counts it as a failure (and retries it), never done.
UNREADABLE = (MISSING_SHARD, NOT_A_FILE, UNREADABLE_SHARD)


def expand_shards(patterns: str | Sequence[str]) -> list[str]:
    """Brace patterns (``web/web-{000000..000039}.tar``), globs, directories (their ``*.tar``)
    or URLs → the list of shards, in order, each file once.

    A name given outright (plainly or by a brace range) is kept even when it is not there:
    reading records it as ``missing_shard`` and the run goes on. Raises ``FileNotFoundError``
    when no local name exists at all, or a glob or directory matches nothing, and
    ``ValueError`` for an unreadable directory, a URL scheme webdataset cannot open, a URL a
    shell would cut short (see ``check_url``) or an empty list. A file named twice (``a.tar``
    and ``./a.tar``, or a link to it) is kept once, where it first comes. Expanding an expanded
    list gives it back unchanged.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    shards: list[str] = []
    local: list[str] = []  # local names, to tell a typo from a few missing shards
    given: list[str] = []  # patterns holding a local name, for the message
    for pattern in map(str, patterns):
        # each name on its own: a brace or a '::' can put a URL and a path in one pattern
        for name in expand_urls(pattern):
            if is_remote(name):
                check_url(name)
                shards.append(name)
                continue
            if os.path.isdir(name):
                found = _tars_in(name)
            elif glob.has_magic(name):
                found = sorted(glob.glob(name))
                if not found:
                    raise FileNotFoundError(f"shard pattern {pattern!r} matches no file")
            else:
                found = [name]
            shards.extend(found)
            local.extend(found)
            given += [pattern] if pattern not in given else []
    if local and not any(os.path.exists(local_path(name)) for name in local):
        raise FileNotFoundError(f"shard pattern {given[0]!r} matches no file" if len(given) == 1 else
                                f"shard patterns {', '.join(map(repr, given))} match no file")
    if not shards:
        raise ValueError("no shard pattern given")
    return _each_once(shards)


def shell_commands(patterns: str | Sequence[str]) -> list[str]:
    """The names ``patterns`` expand to (braces, ``::`` lists, ``${WDS_...}`` variables, as
    ``expand_shards`` expands them) that run a command of their own in a shell: ``pipe:``."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    return [name for pattern in map(str, patterns) for name in expand_urls(pattern) if url_scheme(name) == "pipe"]


def url_scheme(name: str) -> str:
    """The scheme ``name`` starts with, as written (``""`` for none). Read literally: a name
    starting with a space or a tab is a local path, never a URL (``urlparse`` would strip them,
    and webdataset then runs ``" pipe:..."`` as a pipe)."""
    match = _SCHEME.match(name)
    return match.group(1) if match else ""


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def check_url(url: str) -> None:
    """Refuse, with ``ValueError``, a URL webdataset cannot open as meant: a scheme it has no
    reader for, or not in lower case (its ``pipe:`` reader asserts it), and a quote in a URL it
    hands to a shell command inside quotes (``curl '{url}'``, ``gsutil cat '{url}'``): the
    quote would end the URL there and the shell would run the rest."""
    scheme = url_scheme(url)
    if scheme.lower() not in gopen_schemes:
        raise ValueError(f"no reader for {scheme}:// URLs ({url!r}); "
                         f"stream them with 'pipe:COMMAND' (e.g. 'pipe:aws s3 cp URL -')")
    if scheme != scheme.lower():
        raise ValueError(f"write the URL scheme in lower case: {url!r}")
    if scheme != "pipe" and "'" in url:
        raise ValueError(f"{url!r} holds a quote, which would end the URL in the shell command that fetches it "
                         "and run the rest: write it as %27")


def _each_once(shards: list[str]) -> list[str]:
    """``shards`` without a file named a second time (by its device and inode, or its real path
    when it is not there), or a URL given twice."""
    seen: set[tuple] = set()
    kept = []
    for shard in shards:
        if is_remote(shard):
            identity: tuple = ("url", shard)
        else:
            path = local_path(shard)
            try:
                info = os.stat(path)
                identity = ("file", info.st_dev, info.st_ino)
            except OSError:
                identity = ("path", os.path.realpath(path))
        if identity not in seen:
            seen.add(identity)
            kept.append(shard)
    return kept


def is_remote(url: str) -> bool:
    """A URL webdataset opens (``pipe:``, ``http:``, ...), not a local path or ``file:`` URL."""
    scheme = url_scheme(url).lower()
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def local_path(shard: str) -> str:
    """The file a local shard names (``file:`` URLs included)."""
    return urlparse(shard).path if url_scheme(shard).lower() == "file" else shard


def shard_identity(shard: str) -> tuple[str, int, int]:
    """What says which shard something was made from: (absolute path, size, mtime in ns) of a
    local shard, (URL, -1, -1) of a remote one or a local one that is not there."""
    if is_remote(shard):
        return shard, -1, -1
    path = os.path.abspath(local_path(shard))
    try:
        info = os.stat(path)
    except OSError:
        return path, -1, -1
    return path, info.st_size, info.st_mtime_ns


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
    """Every sample of every shard, checked: a ``RawSample`` whose image starts like a JPEG,
    PNG or WebP and whose caption is non-empty UTF-8, or a ``Rejected`` saying why not."""
    for shard in shards:
        for item in iter_shard(shard):
            if isinstance(item, RawSample):
                reason = sample_problem(item)
                if reason:
                    item = Rejected(item.key, item.source_shard, reason)
            yield item


class UnreadableShard(OSError):
    """A shard that gave nothing at all (missing, not a regular file, not a tar)."""


def iter_readable_shard(shard: str) -> Iterator[RawSample | Rejected]:
    """``iter_samples([shard])`` for a batch job: a shard that gives nothing at all raises
    ``UnreadableShard``, so the job records a failure and retries it instead of marking it done."""
    for item in iter_samples([shard]):
        if isinstance(item, Rejected) and not item.key and item.reason in UNREADABLE:
            raise UnreadableShard(f"{shard}: {item.reason}")
        yield item


def iter_shard(shard: str) -> Iterator[RawSample | Rejected]:
    """Group one shard's members into samples by the key rule above (no content checks).

    A shard that is missing, not a regular file, empty or unreadable gives one ``Rejected``
    with ``key=""``. A tar that breaks off keeps the complete samples read before the damage,
    rejects the sample being read when it broke (nothing says it was complete) and records
    the damage with ``key=""``; bytes after a complete tar's end are recorded the same way,
    every sample kept."""
    try:
        stream = _TarStream(shard)
    except _Refused as refused:
        yield Rejected("", shard, refused.reason)
        return
    cap = max_sample_bytes()
    seen: set[str] = set()
    current: RawSample | None = None
    bad_current, size, members, damage = "", 0, 0, None
    try:
        for info in stream.members():
            members += 1
            key, ext = split_member_name(info.name, current.key if current else None)
            if current is None or key != current.key:
                if current is not None:
                    yield _finish(current, bad_current, seen)
                current, bad_current, size = RawSample(key, shard, {}), "", 0
            problem = member_problem(info.name, key, ext) or (
                SPECIAL_MEMBER if not info.isreg() else DUPLICATE_MEMBER if _has_member(current, ext)
                else MEMBER_TOO_LARGE if size + info.size > cap else None)
            if problem:  # its bytes are never read: tarfile skips them in bounded memory
                bad_current = bad_current or problem
            elif not bad_current:
                current.members[ext] = stream.read(info)
                size += info.size
        damage = stream.end()
    except _Oversized:
        damage = MEMBER_TOO_LARGE
    except Exception:  # tarfile's and the decompressors' errors when the stream breaks off
        damage = TRUNCATED_TAR
    except BaseException:  # the reader stopped early (GeneratorExit) or the run is stopping
        stream.close()
        raise
    closed = stream.close()
    if not closed:  # a pipe: URL reports its command's failure here
        damage = damage if damage in (TRUNCATED_TAR, MEMBER_TOO_LARGE) else TRUNCATED_TAR
    if damage in (TRUNCATED_TAR, MEMBER_TOO_LARGE):
        if members == 0:
            yield Rejected("", shard, EMPTY_SHARD if stream.empty and closed else UNREADABLE_SHARD)
            return
        if current is not None:
            yield Rejected(printable_key(current.key), shard, damage)
        yield Rejected("", shard, damage)
        return
    if current is not None:
        yield _finish(current, bad_current, seen)
    elif members == 0:
        yield Rejected("", shard, EMPTY_SHARD)  # zero bytes, or a tar with no member
    if damage:
        yield Rejected("", shard, damage)


class _Refused(Exception):
    def __init__(self, reason: str):
        self.reason = reason


class _Oversized(Exception):
    """A long-name or PAX header too large to read (tarfile would read it whole)."""


_EXTENDED_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                     tarfile.SOLARIS_XHDTYPE)


class _CappedInfo(tarfile.TarInfo):
    def _proc_member(self, tar):
        if self.type in _EXTENDED_HEADERS and self.size > EXTENDED_HEADER_BYTES:
            raise _Oversized(self.size)
        return super()._proc_member(tar)


_DECOMPRESSORS = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f)), (b"BZh", bz2.BZ2File),
                  (b"\xfd7zXZ\x00", lzma.LZMAFile))
_BLOCK = tarfile.BLOCKSIZE
_TAIL = 1 << 20  # bytes read after a tar's end-of-archive block, to tell padding from garbage


class _TarStream:
    """One shard as a stream of tar members: opened without blocking, decompressed when it is
    gzip, bzip2 or xz, and checked at the end for the zero block a complete tar ends with."""

    def __init__(self, shard: str):
        self.cut = False  # stopped reading after the end-of-archive, with bytes left
        self.raw = open_shard(shard)
        try:
            head = self.raw.read(6)
        except Exception:  # a pipe: command that failed before writing anything
            self.close()
            raise _Refused(UNREADABLE_SHARD) from None
        stream: BinaryIO = _Prefixed(head, self.raw)
        for magic, decompressor in _DECOMPRESSORS:
            if head.startswith(magic):
                stream = _Decompressed(decompressor(stream))
        self.stream = _Recorder(stream)
        self.tar: tarfile.TarFile | None = None

    @property
    def empty(self) -> bool:
        return self.stream.length == 0

    def members(self) -> Iterator[tarfile.TarInfo]:
        self.tar = tarfile.open(fileobj=self.stream, mode="r|", tarinfo=_CappedInfo)
        for info in self.tar:
            yield info
            self.tar.members = []  # tarfile keeps every header it read; we need none

    def read(self, info: tarfile.TarInfo) -> bytes:
        return self.tar.extractfile(info).read()

    def end(self) -> str | None:
        """None for a clean end; ``truncated_tar`` when the tar stopped without its zero
        block (cut at a member boundary, or garbage where a header should be);
        ``trailing_garbage`` when non-zero bytes follow a complete tar."""
        offset = self.tar.offset  # where tarfile read the block that stopped it
        if self.stream.bytes_from(offset, _BLOCK) != bytes(_BLOCK):
            return TRUNCATED_TAR
        read_ahead = self.stream.bytes_from(offset + _BLOCK)
        garbage, seen = read_ahead.count(0) != len(read_ahead), len(read_ahead)
        # a pipe's command must run to its end, so read what follows, but only up to _TAIL: a
        # 20 GB file of zeros (or an endless pipe) would otherwise be read to its end
        while seen < _TAIL and (data := self.stream.read(min(1 << 16, _TAIL - seen))):
            garbage, seen = garbage or data.count(0) != len(data), seen + len(data)
        if seen >= _TAIL and self.stream.read(1):
            self.cut = True  # left unread: its source's complaint at close is ours, not a failure
        broken = getattr(self.stream.stream, "broken", False)
        return TRAILING_GARBAGE if garbage or self.cut or broken else None

    def close(self) -> bool:
        """Close the shard; False when its source reports a failure (a ``pipe:`` command's exit
        status), unless reading stopped before its end on purpose."""
        try:
            self.raw.close()
            return True
        except Exception:
            return self.cut


def open_shard(shard: str) -> BinaryIO:
    """The shard's bytes as a stream. A local path is opened without blocking and refused
    unless it is a regular file, so a FIFO or a device named ``x.tar`` never hangs a run."""
    if is_remote(shard):
        try:
            return gopen(shard)
        except FileNotFoundError:
            raise _Refused(MISSING_SHARD) from None
        except OSError:
            raise _Refused(UNREADABLE_SHARD) from None
    try:
        fd = os.open(local_path(shard), os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _Refused(MISSING_SHARD) from None
    except OSError:
        raise _Refused(UNREADABLE_SHARD) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Refused(NOT_A_FILE)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class _Prefixed:
    """``head`` (bytes already read to sniff the compression), then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self.head, self.stream = head, stream

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.stream.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.stream.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        return data + self.stream.read(size - len(data)) if len(data) < size else data


class _Decompressed:
    """A decompressing file whose stream may break off or turn to garbage: it then ends, and
    ``broken`` says so. Whether that cut a sample is the tar's to tell: ending before the tar's
    own end is ``truncated_tar``, after it ``trailing_garbage``. ``read1`` decodes one chunk at a
    time, so nothing decoded is lost when the next chunk fails."""

    def __init__(self, file):
        self.file, self.broken = file, False

    def read(self, size: int = -1) -> bytes:
        if self.broken:
            return b""
        try:
            return self.file.read1(size if size and size > 0 else 1 << 16)
        except (EOFError, OSError, lzma.LZMAError, zlib.error):
            self.broken = True
            return b""


class _Recorder:
    """A read-only stream that counts its bytes and keeps the last ``WINDOW`` of them, so the
    block tarfile stopped at can be looked at after tarfile's own read-ahead."""

    WINDOW = 4 * tarfile.RECORDSIZE

    def __init__(self, stream: BinaryIO):
        self.stream, self.length = stream, 0
        self.chunks: deque[bytes] = deque()
        self.kept = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.length += len(data)
        self.chunks.append(data)
        self.kept += len(data)
        while self.chunks and self.kept - len(self.chunks[0]) >= self.WINDOW:
            self.kept -= len(self.chunks.popleft())
        return data

    def bytes_from(self, offset: int, size: int | None = None) -> bytes:
        """The bytes read from ``offset`` on (at most ``size``); empty when not kept."""
        start = offset - (self.length - self.kept)
        if start < 0:
            return b""
        data = b"".join(self.chunks)[start:]
        return data if size is None else data[:size]


def split_member_name(name: str, current_key: str | None) -> tuple[str, str]:
    """(key, extension) of a member, by the key rule in the module docstring (a name without
    a dot is all key, with no extension)."""
    if current_key and name.startswith(current_key + "."):
        return current_key, name[len(current_key) + 1 :]
    key, dot, ext = name.rpartition(".")
    return (key, ext) if dot else (name, "")


def member_problem(name: str, key: str, ext: str) -> str | None:
    """``member_name_not_utf8`` for a name whose bytes are not UTF-8 (tarfile hands them over
    as surrogates, which neither a tar we write nor the manifest can hold);
    ``unsafe_member_name`` for a name that must never become a path or a sample: a folder
    (``/``, ``\\``), no key or extension, or a key starting with a dot (``..jpg``,
    ``.hidden.jpg``: hidden files when untarred, refused by the writer)."""
    if not _is_utf8(name):
        return MEMBER_NAME_NOT_UTF8
    return UNSAFE_MEMBER_NAME if unsafe_key(key) or not ext or "/" in name or "\\" in name else None


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable_key(key: str) -> str:
    """``key`` as the manifest can store it: bytes that were not UTF-8 written as escapes
    (``caf\\udce9``); any other key unchanged."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def unsafe_key(key: str) -> bool:
    """A key the writer refuses: empty, a folder in it, or a leading dot."""
    return not key or "/" in key or "\\" in key or key.startswith(".")


def _has_member(sample: RawSample, ext: str) -> bool:
    """``sample`` already has a member with extension ``ext`` (in any case: ``jpg`` and ``JPG``
    would be two images)."""
    return any(ext.lower() == held.lower() for held in sample.members)


def _finish(sample: RawSample, bad: str, seen: set[str]) -> RawSample | Rejected:
    if not bad and sample.key in seen:
        bad = DUPLICATE_KEY  # the key came back after other samples: not one sample any more
    seen.add(sample.key)
    return Rejected(printable_key(sample.key), sample.source_shard, bad) if bad else sample


def member_of(sample: RawSample, extensions: Sequence[str]) -> str | None:
    """The extension of the sample's first member with one of ``extensions``, in any case
    (``JPG``, ``TXT``: names keep their case, so the written tar matches the one read)."""
    for ext in sample.members:
        if ext.lower() in extensions:
            return ext
    return None


def image_member(sample: RawSample) -> str | None:
    """The extension of the sample's image member, if it has one."""
    return member_of(sample, IMAGE_EXTENSIONS)


def caption_member(sample: RawSample) -> str | None:
    """The extension of the sample's caption member (``txt``, in any case), if it has one."""
    return member_of(sample, (CAPTION_EXTENSION,))


def sample_problem(sample: RawSample) -> str | None:
    """Cheap checks (no decoding): the reason to reject ``sample``, or None."""
    ext = image_member(sample)
    if ext is None:
        return MISSING_IMAGE
    data = sample.members[ext]
    if not data:
        return EMPTY_IMAGE
    if not _has_image_signature(data):
        return CORRUPT_IMAGE
    caption = caption_member(sample)
    if caption is None:
        return MISSING_CAPTION
    try:
        text = sample.members[caption].decode("utf-8")
    except UnicodeDecodeError:
        return CAPTION_NOT_UTF8
    if not text.strip():
        return EMPTY_CAPTION
    return None


def _has_image_signature(data: bytes) -> bool:
    """The file starts like a JPEG, PNG or WebP. Checking the signature costs ~1 µs where
    PIL's header parse cost ~0.3 ms a sample; pixels that do not decode are caught later,
    when the loader decodes them."""
    return (data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"))


def caption_of(sample: RawSample) -> str:
    return sample.members[caption_member(sample)].decode("utf-8").strip()
