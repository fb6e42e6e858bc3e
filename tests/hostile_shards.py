"""Build a folder of hostile shards: what a careless download, a broken disk or an attacker
can hand jestfilter. Every sample in them is either good or damaged in one known way, and
``Hostile.records`` says which: (shard file name, key, reason), the reason None for a good
sample and the key "" for a record about the whole shard.

    python tests/hostile_shards.py DIR     # writes DIR/hostile-0000NN.tar and DIR/expected.json

The shards (one brace range, ``hostile-{000000..000013}.tar``):

    00  plain tar: good samples; unsafe names (``../``, absolute, folders, backslash, no
        extension), dot keys (``..jpg``, ``.hidden.jpg``), a duplicate member, a key that comes
        back later, links (one sample made only of symlinks, a hard link), a character
        device, a FIFO and a folder as members; a PNG whose header announces 30,000² pixels
    01  an img2dataset download: keys 000000000...
    02  a second download with the *same keys* and other pictures, gzip-compressed
    03  gzip tar with 512 bytes of garbage after its end
    04  plain tar with garbage after its end
    05  a FIFO named like a shard            06  a link to /dev/zero
    07  missing                               08  gzip bomb: a 80 MiB member of zeros (~80 KB)
    09  plain tar cut inside a member         10  gzip tar cut inside a member
    11  zero bytes                            12  random bytes
    13  a PAX header of 2 MiB (tarfile would read it whole) after two good samples
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import fashion_mnist, img2dataset_sample, members_of  # noqa: E402

DECODE_REASONS = ("image_too_large", "corrupt_image")  # found only when pixels are decoded


@dataclass
class Hostile:
    folder: Path
    pattern: str
    records: list[tuple[str, str, str | None]]  # (shard file name, key, reason or None when good)
    unreadable: list[str]  # shards that give nothing at all (a batch job's failures)

    def good(self) -> list[tuple[str, str]]:
        return sorted((shard, key) for shard, key, reason in self.records if reason is None)

    def samples(self) -> list[tuple[str, str, str | None]]:
        """Every sample read (good or not), without the shard-level records (key "")."""
        return sorted((r for r in self.records if r[1]), key=str)


class _Builder:
    def __init__(self, folder: Path):
        self.folder, self.expected = folder, {}  # (shard, key) → reason, the last word on each sample
        self.repeats: list[tuple[str, str, str]] = []  # a second record for a key met twice
        self.images, self.labels = fashion_mnist(400)
        self.next_image = 0

    def sample(self, key: str) -> list[tuple[str, bytes]]:
        i = self.next_image
        self.next_image += 1
        s = img2dataset_sample(key, self.images[i], int(self.labels[i]))
        return [(f"{key}.{ext}", data) for ext, data in sorted(members_of(s).items())]

    def good(self, shard: str, keys: list[str]) -> list[tuple[str, bytes]]:
        members = []
        for key in keys:
            members += self.sample(key)
            self.expected[(shard, key)] = None
        return members

    def path(self, index: int) -> tuple[str, Path]:
        name = f"hostile-{index:06d}.tar"
        return name, self.folder / name


class Zeros:
    """``size`` zero bytes as a stream, never all in memory at once."""

    def __init__(self, size: int):
        self.size = self.left = size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def write_tar(out, members: list) -> None:
    """Write a tar of ``members`` to ``out``: (name, bytes or Zeros) for a file, a ``tarfile.TarInfo``
    for anything else."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, data if isinstance(data, Zeros) else io.BytesIO(data))


def tar_bytes(members: list, compress: bool = False) -> bytes:
    out = io.BytesIO()
    write_tar(out, members)
    data = out.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width`` × ``height`` pixels, with one row of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
            + chunk(b"IEND", b""))


def build_hostile_shards(folder: str | os.PathLike) -> Hostile:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("hostile-*.tar"):  # a FIFO or a link is never opened, only removed
        old.unlink()
    b = _Builder(folder)
    unreadable = []

    # 00: names, keys, links, devices, FIFOs, folders, a bomb's header
    name, path = b.path(0)
    members = b.good(name, ["000000000", "000000001"])
    for bad_key, member_name in [("../escape", "../escape.jpg"), ("/etc/passwd", "/etc/passwd.jpg"),
                                 ("sub/inner", "sub/inner.jpg"), ("back\\slash", "back\\slash.jpg"),
                                 (".", "..jpg"), (".hidden", ".hidden.jpg"), ("README", "README")]:
        members.append((member_name, b.sample("x")[1][1]))
        b.expected[(name, bad_key)] = "unsafe_member_name"
    members += b.good(name, ["000000002"])
    dup = b.sample("000000003")
    members += dup + [dup[1]]  # its jpg twice
    b.expected[(name, "000000003")] = "duplicate_member"
    members += b.good(name, ["000000004"])
    members += b.sample("000000002")  # a key coming back later in the shard: the first one stays
    b.repeats.append((name, "000000002", "duplicate_key"))
    links = [special("000000005.jpg", tarfile.SYMTYPE, "000000000.jpg"),
             special("000000005.txt", tarfile.SYMTYPE, "/etc/passwd")]  # a sample made only of symlinks
    members += links
    b.expected[(name, "000000005")] = "special_member"
    hard = b.sample("000000006")
    members += [hard[0], hard[1], special("000000006.txt", tarfile.LNKTYPE, "000000000.txt")]
    b.expected[(name, "000000006")] = "special_member"
    members += [special("000000007.jpg", tarfile.CHRTYPE), special("000000008.jpg", tarfile.FIFOTYPE),
                special("folder", tarfile.DIRTYPE)]
    b.expected.update({(name, "000000007"): "special_member", (name, "000000008"): "special_member",
                       (name, "folder"): "unsafe_member_name"})
    bomb = b.sample("000000009")
    members += [("000000009.json", bomb[0][1]), ("000000009.png", png_header_only(30_000, 30_000)),
                ("000000009.txt", bomb[2][1])]
    b.expected[(name, "000000009")] = "image_too_large"
    members += b.good(name, ["000000010", "dupkey"])
    path.write_bytes(tar_bytes(members))

    # 01 and 02: two downloads numbering their keys alike; 02 gzip-compressed
    keys = [f"{i:09d}" for i in range(8)]
    name, path = b.path(1)
    path.write_bytes(tar_bytes(b.good(name, keys + ["dupkey"])))
    name, path = b.path(2)
    path.write_bytes(tar_bytes(b.good(name, keys), compress=True))

    # 03, 04: garbage after a complete tar (gzip, plain): every sample stays
    for index, compress in ((3, True), (4, False)):
        name, path = b.path(index)
        path.write_bytes(tar_bytes(b.good(name, [f"{index:04d}{i:05d}" for i in range(4)]), compress)
                         + os.urandom(512))
        b.expected[(name, "")] = "trailing_garbage"

    # 05: a FIFO, 06: a device, 07: missing
    name, path = b.path(5)
    os.mkfifo(path)
    b.expected[(name, "")] = "not_a_file"
    name, path = b.path(6)
    path.symlink_to("/dev/zero")
    b.expected[(name, "")] = "not_a_file"
    name, _ = b.path(7)
    b.expected[(name, "")] = "missing_shard"
    unreadable += [b.path(i)[0] for i in (5, 6, 7)]

    # 08: a gzip bomb between good samples
    name, path = b.path(8)
    members = b.good(name, ["000800000"])
    big = b.sample("000800001")
    members += [big[0], ("000800001.npy", Zeros(80 << 20)), *big[1:]]
    b.expected[(name, "000800001")] = "member_too_large"
    members += b.good(name, ["000800002"])
    with gzip.open(path, "wb", compresslevel=1) as out:
        write_tar(out, members)

    # 09, 10: cut inside the third sample's image (plain, gzip)
    for index, compress in ((9, False), (10, True)):
        name, path = b.path(index)
        keys = [f"{index:04d}{i:05d}" for i in range(4)]
        members = b.good(name, keys[:2]) + b.sample(keys[2]) + b.sample(keys[3])
        data = tar_bytes(members)
        cut = data.index(members[6][1]) + 50  # inside keys[2].jpg
        data = data[:cut]
        path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
        b.expected[(name, keys[2])] = "truncated_tar"
        b.expected[(name, "")] = "truncated_tar"

    # 11: zero bytes, 12: not a tar
    name, path = b.path(11)
    path.write_bytes(b"")
    b.expected[(name, "")] = "empty_shard"
    name, path = b.path(12)
    path.write_bytes(os.urandom(5000))
    b.expected[(name, "")] = "unreadable_shard"
    unreadable.append(name)

    # 13: a 2 MiB PAX header (a name tarfile would read whole) after two good samples
    name, path = b.path(13)
    members = b.good(name, ["001300000", "001300001"]) + [(("x" * (2 << 20)) + ".jpg", b"x")]
    path.write_bytes(tar_bytes(members))
    b.expected[(name, "001300001")] = "member_too_large"  # the sample being read when it stopped
    b.expected[(name, "")] = "member_too_large"

    pattern = str(folder / "hostile-{000000..000013}.tar")
    records = sorted([(shard, key, reason) for (shard, key), reason in b.expected.items()] + b.repeats, key=str)
    (folder / "expected.json").write_text(json.dumps(
        [{"shard": s, "key": k, "reason": r} for s, k, r in records], indent=1))
    return Hostile(folder, pattern, records, unreadable)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    built = build_hostile_shards(sys.argv[1])
    print(f"{built.pattern}: {len(built.good())} good samples, "
          f"{sum(r is not None for _, _, r in built.records)} damaged samples and shards")
