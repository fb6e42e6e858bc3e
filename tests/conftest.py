"""Shared fixtures: small real WebDataset shards in img2dataset's layout, made from
Fashion-MNIST images (Debian's dataset-fashion-mnist), healthy and damaged."""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import webdataset as wds

from jestfilter.datasets.fashion_mnist import load_fashion_mnist

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@functools.cache
def _fashion_mnist():
    return load_fashion_mnist()


def fashion_mnist(n: int, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images ([n, 28, 28] uint8) and labels of a Fashion-MNIST split."""
    data = _fashion_mnist()
    images, labels = (data.test_images, data.test_labels) if split == "t10k" else (data.train_images, data.train_labels)
    return images[:n].copy(), labels[:n].copy()


def encode(pixels: np.ndarray, fmt: str = "JPEG", size: int | None = None) -> bytes:
    image = PIL.Image.fromarray(pixels).convert("RGB")
    if size:
        image = image.resize((size, size), PIL.Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, format=fmt, quality=90) if fmt == "JPEG" else image.save(out, format=fmt)
    return out.getvalue()


def img2dataset_sample(key: str, pixels: np.ndarray, label: int, fmt: str = "JPEG") -> dict:
    """A sample as img2dataset writes it: image, caption and its JSON metadata."""
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    caption = f"a photo of a {CLASSES[label]}"
    meta = {"key": key, "caption": caption, "status": "success", "width": 28, "height": 28}
    return {"__key__": key, ext: encode(pixels, fmt), "txt": caption.encode(), "json": json.dumps(meta).encode()}


def members_of(sample: dict) -> dict[str, bytes]:
    return {k: v for k, v in sample.items() if not k.startswith("__")}


@dataclass
class Shards:
    folder: Path
    pattern: str  # brace pattern over the shards
    samples: dict[str, dict[str, bytes]]  # key → members, for every healthy sample
    paths: list[Path]


def write_web_shards(folder: Path, n_shards: int = 3, per_shard: int = 20, start: int = 0) -> Shards:
    """img2dataset-style shards: 9-digit keys ``SSSSIIIII``, mostly JPEG, some PNG and WebP,
    and in each shard a short key, a dotted key and a long key."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = fashion_mnist(start + n_shards * per_shard)
    samples, paths = {}, []
    index = start
    for shard in range(n_shards):
        path = folder / f"web-{shard:06d}.tar"
        with wds.TarWriter(str(path), mtime=0) as sink:
            for i in range(per_shard):
                key = f"{shard:04d}{i:05d}"
                if i == 1:
                    key = f"s{shard}"
                elif i == 2:
                    key = f"img.v{shard}.{i}"  # dots inside the key
                elif i == 3:
                    key = f"long-{shard}-" + "x" * 40
                fmt = "PNG" if i % 7 == 5 else "WEBP" if i % 7 == 6 else "JPEG"
                sample = img2dataset_sample(key, images[index], int(labels[index]), fmt)
                sink.write(sample)
                samples[key] = members_of(sample)
                index += 1
        paths.append(path)
    return Shards(folder, str(folder / f"web-{{000000..{n_shards - 1:06d}}}.tar"), samples, paths)


def write_members(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar holding exactly these members, in this order (for damage webdataset would refuse)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# Damaged samples in damaged-000000.tar: key → the reason the reader must give.
DAMAGE = {
    "000000010": "empty_image",
    "000000011": "corrupt_image",  # garbage bytes: no image signature
    "000000012": "missing_caption",
    "000000013": "empty_caption",
    "000000014": "caption_not_utf8",
    "000000015": "missing_image",
    # a member name with a folder or ".." becomes its own rejected sample, never a path;
    # the sample it was cut from lacks that member
    "sub/000000016": "unsafe_member_name",
    "000000016": "missing_image",
    "../000000017": "unsafe_member_name",
    "000000017": "missing_caption",
    "000000018": "duplicate_member",
    "000000019": "corrupt_image",  # a valid JPEG header with the body cut: fails at decode only
}


@dataclass
class DamagedShards:
    folder: Path
    pattern: str
    good: dict[str, dict[str, bytes]]  # samples that must come through
    expected: dict[tuple[str, str], str]  # (shard file name, key or "") → reason


def write_damaged_shards(folder: Path) -> DamagedShards:
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = fashion_mnist(40)
    good, expected = {}, {}

    def sample(i: int) -> dict:
        return img2dataset_sample(f"{i:09d}", images[i], int(labels[i]))

    members = []
    for i in range(3):  # healthy samples first
        s = sample(i)
        good[s["__key__"]] = members_of(s)
        members += [(f"{s['__key__']}.{ext}", data) for ext, data in sorted(members_of(s).items())]
    for i in range(10, 20):
        s, key = sample(i), f"{i:09d}"
        m = members_of(s)
        if key == "000000010":
            m["jpg"] = b""
        elif key == "000000011":
            m["jpg"] = os.urandom(500)
        elif key == "000000012":
            del m["txt"]
        elif key == "000000013":
            m["txt"] = b"   "
        elif key == "000000014":
            m["txt"] = "une robe d'été".encode("latin-1")
        elif key == "000000015":
            del m["jpg"]
        elif key == "000000019":
            m["jpg"] = m["jpg"][: len(m["jpg"]) * 8 // 10]
        names = [(f"{key}.{ext}", data) for ext, data in sorted(m.items())]
        if key == "000000016":
            names[0] = (f"sub/{names[0][0]}", names[0][1])
        elif key == "000000017":
            names[-1] = (f"../{names[-1][0]}", names[-1][1])
        elif key == "000000018":
            names.append(names[0])
        members += names
    expected.update({("damaged-000000.tar", key): reason for key, reason in DAMAGE.items()})
    for i in range(20, 22):  # healthy samples after the damage
        s = sample(i)
        good[s["__key__"]] = members_of(s)
        members += [(f"{s['__key__']}.{ext}", data) for ext, data in sorted(members_of(s).items())]
    write_members(folder / "damaged-000000.tar", members)

    # damaged-000001.tar: cut in the middle of the 4th sample's image. The sample being read
    # when the tar broke (the 4th) is rejected; the three before it come through (the 4th's
    # intact header says the 3rd had ended).
    whole = [sample(i) for i in range(30, 36)]
    write_members(folder / "full.tmp", [(f"{s['__key__']}.{e}", d) for s in whole for e, d in sorted(members_of(s).items())])
    data = (folder / "full.tmp").read_bytes()
    (folder / "full.tmp").unlink()
    cut = data.index(whole[3]["jpg"]) + 100
    (folder / "damaged-000001.tar").write_bytes(data[:cut])
    for s in whole[:3]:
        good[s["__key__"]] = members_of(s)
    expected[("damaged-000001.tar", whole[3]["__key__"])] = "truncated_tar"
    expected[("damaged-000001.tar", "")] = "truncated_tar"

    (folder / "damaged-000002.tar").write_bytes(b"")  # zero bytes
    expected[("damaged-000002.tar", "")] = "empty_shard"
    expected[("damaged-000003.tar", "")] = "missing_shard"  # in the pattern, not on disk
    (folder / "damaged-000004.tar").write_bytes(os.urandom(3000))  # not a tar at all
    expected[("damaged-000004.tar", "")] = "unreadable_shard"
    return DamagedShards(folder, str(folder / "damaged-{000000..000004}.tar"), good, expected)


@pytest.fixture(scope="session")
def web_shards(tmp_path_factory) -> Shards:
    """Three healthy img2dataset-style shards of 20 samples (read-only: do not modify)."""
    return write_web_shards(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="session")
def damaged_shards(tmp_path_factory) -> DamagedShards:
    """Shards with every kind of damage the reader must survive (read-only)."""
    return write_damaged_shards(tmp_path_factory.mktemp("damaged"))


@pytest.fixture(scope="session")
def preprocess():
    import open_clip

    return open_clip.image_transform(28, is_train=False)


@pytest.fixture(scope="session")
def tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer(context_length=16)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory):
    """The hostile shards of ``tests/hostile_shards.py`` (read-only)."""
    from hostile_shards import build_hostile_shards

    return build_hostile_shards(tmp_path_factory.mktemp("hostile"))


def kept_keys(out: Path) -> list[str]:
    """Keys marked kept in a run folder's filtered/ manifest (once each, sorted)."""
    import polars as pl

    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    return sorted(manifest.filter(pl.col("decision") == "kept")["key"].unique().to_list())
