"""The demo-data builder: real Fashion-MNIST images, img2dataset layout, noise as asked, deterministic."""

import hashlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import webdataset as wds
from PIL import Image

from jestfilter.cli import main
from jestfilter.datasets.captions import CLASS_NOUNS
from jestfilter.datasets.demo import NOISE_KINDS, build_demo_data
from jestfilter.datasets.fashion_mnist import load_fashion_mnist

SMALL = dict(curated=300, web=1000, eval=200, samples_per_shard=128)
# An even mix makes the expected counts easy to state: 50% noise → 100 of each noise kind.
EVEN_MIX = dict.fromkeys(NOISE_KINDS, 1.0)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    first = build_demo_data(root / "a", seed=0, noise=0.5, mix=EVEN_MIX, progress=False, **SMALL)
    again = build_demo_data(root / "b", seed=0, noise=0.5, mix=EVEN_MIX, progress=False, **SMALL)
    other_seed = build_demo_data(root / "c", seed=1, noise=0.5, mix=EVEN_MIX, progress=False, **SMALL)
    return first, again, other_seed


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist()


def read_split(folder: Path) -> dict[str, dict[str, bytes]]:
    """key → members, read with plain tarfile iteration through webdataset."""
    samples = {}
    for shard in sorted(folder.glob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            assert sample["__key__"] not in samples, "key repeated across shards"
            samples[sample["__key__"]] = {k: v for k, v in sample.items() if not k.startswith("__")}
    return samples


def pixel_hash(jpg: bytes) -> str:
    return hashlib.sha256(np.asarray(Image.open(io.BytesIO(jpg))).tobytes()).hexdigest()


def test_same_seed_gives_byte_identical_shards_and_another_seed_differs(builds):
    first, again, other_seed = builds
    tars = sorted(p.relative_to(first.root) for p in first.root.rglob("*.tar"))
    assert len(tars) == 3 + 8 + 2  # ceil(300/128), ceil(1000/128), ceil(200/128)
    for tar in tars:
        assert (first.root / tar).read_bytes() == (again.root / tar).read_bytes(), tar
    assert pl.read_parquet(first.truth).equals(pl.read_parquet(again.truth))
    differing = [t for t in tars if (first.root / t).read_bytes() != (other_seed.root / t).read_bytes()]
    assert differing == tars


def test_split_sizes_and_noise_mix_are_as_requested(builds):
    demo = builds[0]
    for split, folder in {"curated": demo.root / "curated", "web": demo.root / "web", "eval": demo.eval}.items():
        samples = read_split(folder)
        assert len(samples) == SMALL[split] == demo.split_counts[split]
        sizes = json.loads((folder / "sizes.json").read_text())
        assert sum(sizes.values()) == len(samples)
        for name, n in sizes.items():
            assert json.loads((folder / f"{name[:-4]}_stats.json").read_text())["successes"] == n
    truth = pl.read_parquet(demo.truth)
    counts = dict(truth.group_by("kind").len().iter_rows())
    assert counts == {"clean": 500, **dict.fromkeys(NOISE_KINDS, 100)} == demo.kind_counts


def test_default_mix_splits_noise_by_documented_weights(tmp_path):
    demo = build_demo_data(tmp_path / "d", curated=10, web=1000, eval=10, progress=False)
    assert demo.kind_counts == {"clean": 400, "mismatched": 210, "uninformative": 120, "junk_image": 90,
                                "duplicate": 60, "partial": 120}  # fmt: skip
    no_noise = build_demo_data(tmp_path / "e", curated=10, web=50, eval=10, noise=0.0, progress=False)
    assert no_noise.kind_counts == {"clean": 50, **dict.fromkeys(NOISE_KINDS, 0)}


def test_ground_truth_names_every_web_sample_once_and_matches_the_shards(builds, fashion):
    demo = builds[0]
    web = read_split(demo.root / "web")
    truth = pl.read_parquet(demo.truth)
    assert truth["key"].n_unique() == truth.height == len(web)
    assert set(truth["key"]) == set(web)
    for row in truth.iter_rows(named=True):
        sample = web[row["key"]]
        assert sample["txt"].decode() == row["caption"]
        assert json.loads(sample["json"])["key"] == row["key"]
        if row["source_index"] is not None and row["kind"] != "junk_image":
            # a real Fashion-MNIST image with its true label (JPEG is lossy: compare loosely)
            decoded = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("L"), dtype=float)
            assert np.abs(decoded - fashion.train_images[row["source_index"]]).mean() < 4
            assert row["true_class"] == fashion.train_labels[row["source_index"]]
    assert truth.filter(pl.col("shard").is_null()).height == 0


def test_each_noise_kind_looks_like_its_description(builds):
    truth = pl.read_parquet(builds[0].truth)

    def names_class(caption, cls):
        return any(noun in caption for noun in CLASS_NOUNS[cls])

    def all_nouns(caption):
        return [noun for nouns in CLASS_NOUNS for noun in nouns if noun in caption]

    by_kind = {kind: truth.filter(pl.col("kind") == kind) for kind in ["clean", *NOISE_KINDS]}
    assert all(names_class(r["caption"], r["true_class"]) for r in by_kind["clean"].iter_rows(named=True))
    mismatched = by_kind["mismatched"]
    assert (mismatched["caption_class"] != mismatched["true_class"]).all()
    assert all(names_class(r["caption"], r["caption_class"]) for r in mismatched.iter_rows(named=True))
    assert all(not all_nouns(c) for c in by_kind["uninformative"]["caption"])
    assert by_kind["junk_image"]["true_class"].is_null().all()
    assert set(by_kind["junk_image"]["detail"]) == {"noise", "blank", "scrambled"}
    partial = by_kind["partial"]
    assert set(partial["detail"]) == {"spam", "related"}
    spam = partial.filter(pl.col("detail") == "spam")
    assert all(len(c.split()) >= 7 for c in spam["caption"])
    related = partial.filter(pl.col("detail") == "related")
    assert (related["caption_class"] != related["true_class"]).all()
    duplicates = by_kind["duplicate"].group_by("detail").agg(pl.len(), pl.col("caption").n_unique().alias("captions"))
    assert duplicates["len"].min() >= 2 and (duplicates["captions"] == 1).all()
    assert duplicates.height <= 100 / 20  # a few samples, each repeated many times


def test_splits_share_no_image_and_only_duplicates_repeat(builds):
    demo = builds[0]
    hashes = {}
    for split, folder in {"curated": demo.root / "curated", "web": demo.root / "web", "eval": demo.eval}.items():
        hashes[split] = {key: pixel_hash(sample["jpg"]) for key, sample in read_split(folder).items()}
    curated, web, eval_ = (set(hashes[s].values()) for s in ("curated", "web", "eval"))
    assert not curated & web and not curated & eval_ and not web & eval_
    assert len(curated) == SMALL["curated"] and len(eval_) == SMALL["eval"]
    truth = pl.read_parquet(demo.truth)
    # solid one-colour junk images may coincide by chance (as blank images do on the web)
    rows = truth.select("key", "kind", "detail").iter_rows()
    kind = {key: "blank" if detail == "blank" else k for key, k, detail in rows}
    seen = {}
    for key, digest in hashes["web"].items():
        seen.setdefault(digest, []).append(key)
    repeated = [{kind[k] for k in keys} for keys in seen.values() if len(keys) > 1]
    assert {"duplicate"} in repeated and all(kinds in ({"duplicate"}, {"blank"}) for kinds in repeated)


def test_eval_folder_is_complete_and_consistent(builds):
    eval_dir = builds[0].eval
    classnames = (eval_dir / "classnames.txt").read_text().splitlines()
    templates = (eval_dir / "templates.txt").read_text().splitlines()
    assert len(classnames) == 10 and len(set(classnames)) == 10
    assert len(templates) >= 3 and all("{}" in t for t in templates)
    samples = read_split(eval_dir)
    classes = [int(s["cls"]) for s in samples.values()]
    assert set(classes) == set(range(10))
    for sample in samples.values():
        assert set(sample) >= {"jpg", "txt", "cls"}
        assert any(noun in sample["txt"].decode() for noun in CLASS_NOUNS[int(sample["cls"])])


def test_shards_decode_with_plain_webdataset(builds):
    dataset = wds.WebDataset(builds[0].web, shardshuffle=False).decode("pil").to_tuple("jpg", "txt", "json")
    count = 0
    for image, text, meta in dataset:
        assert image.size == (28, 28) and image.mode == "RGB"
        assert isinstance(text, str) and meta["caption"] == text
        count += 1
    assert count == SMALL["web"]


def test_open_clip_train_loader_reads_curated_shards(builds):
    from open_clip import SimpleTokenizer, image_transform
    from open_clip_train.data import get_wds_dataset

    args = SimpleNamespace(train_data=builds[0].curated, train_num_samples=None, dataset_resampled=False,
                           train_data_upsampling_factors=None, seed=0, batch_size=64, workers=0,
                           world_size=1)  # fmt: skip
    preprocess, tokenizer = image_transform(28, is_train=False), SimpleTokenizer(context_length=16)
    info = get_wds_dataset(args, preprocess, is_train=True, tokenizer=tokenizer)
    # the sample count comes from our sizes.json, rounded up to whole batches by open_clip_train
    assert info.dataloader.num_samples == math.ceil(SMALL["curated"] / 64) * 64
    seen = 0
    for images, texts in info.dataloader:
        assert images.shape[1:] == (3, 28, 28) and texts.shape == (images.shape[0], 16)
        seen += images.shape[0]
    assert seen == info.dataloader.num_samples  # it repeats samples to fill the last batch


def test_rebuild_reuses_an_identical_build_and_replaces_a_different_one(tmp_path):
    small = dict(curated=20, web=40, eval=20, progress=False)
    first = build_demo_data(tmp_path / "d", **small)
    assert not first.reused
    assert build_demo_data(tmp_path / "d", **small).reused
    changed = build_demo_data(tmp_path / "d", **{**small, "web": 30})
    assert not changed.reused and len(read_split(tmp_path / "d" / "web")) == 30
    # an interrupted build (marker says incomplete, a split missing) is redone, not reused
    marker = tmp_path / "d" / "demo.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "complete": False}))
    for tar in (tmp_path / "d" / "eval").glob("*.tar"):
        tar.unlink()
    redone = build_demo_data(tmp_path / "d", **{**small, "web": 30})
    assert not redone.reused and len(read_split(tmp_path / "d" / "eval")) == 20
    assert json.loads(marker.read_text())["complete"]


def test_mix_may_name_only_some_kinds(tmp_path):
    demo = build_demo_data(tmp_path / "d", curated=10, web=100, eval=10, noise=0.3, mix={"junk_image": 2.0},
                           progress=False)  # fmt: skip
    assert demo.kind_counts == {"clean": 70, "junk_image": 30, **dict.fromkeys(set(NOISE_KINDS) - {"junk_image"}, 0)}
    with pytest.raises(ValueError, match="mix needs"):
        build_demo_data(tmp_path / "e", mix={"spam": 1.0}, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "/no/such/folder"], "apt-get install dataset-fashion-mnist"),
        (["--web", "0"], "web must be a positive"),
        (["--curated", "-5"], "curated must be a positive"),
        (["--noise", "1.5"], "noise must be a fraction in [0, 1]"),
        (["--noise", "-0.1"], "noise must be a fraction in [0, 1]"),
        (["--mix", "typo=1"], "bad --mix entry"),
        (["--curated", "59000", "--web", "2000"], "train images"),
    ],
)
def test_cli_rejects_bad_arguments_with_one_line(tmp_path, capsys, args, message):
    assert main(["demo-data", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo-data", str(tmp_path), "--web", "10"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_cli_prints_counts_per_split_and_noise_kind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JESTFILTER_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    assert main(["demo-data", str(tmp_path / "d"), "--curated", "30", "--web", "100", "--eval", "20"]) == 0
    out = capsys.readouterr().out
    assert "web/{00000..00000}.tar" not in out and "web/00000.tar" in out
    for line in ["curated      30", "web         100", "eval         20", "clean              40"]:
        assert line in out, line


def test_augmented_variants_are_flipped_or_shifted_copies_of_real_images():
    from jestfilter.datasets.demo import variants

    images, labels = load_fashion_mnist().train_images[:50], np.arange(50)
    pool = np.arange(10, 50)
    out_images, out_labels, out_pool = variants(np.random.default_rng(0), images, labels, pool, 3)
    assert out_images.shape == (150, 28, 28) and (out_labels == np.tile(labels, 3)).all()
    assert sorted(out_pool.tolist()) == sorted([i + v * 50 for v in range(3) for i in range(10, 50)])
    for i in range(50, 150):  # every copy is its original, maybe mirrored, moved by at most 2 px
        original = images[i % 50]
        candidates = [np.pad(o, 2)[2 + dy:30 + dy, 2 + dx:30 + dx] for o in (original, original[:, ::-1])
                      for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any((c == out_images[i]).all() for c in candidates)


def test_an_augmented_web_pool_builds_beyond_the_plain_one_and_repeats_byte_for_byte(tmp_path):
    kwargs = dict(curated=20, web=60, eval=10, samples_per_shard=50, progress=False, augment=2)
    with pytest.raises(ValueError, match="variants"):
        build_demo_data(tmp_path / "too-big", curated=59_990, web=30, eval=10, progress=False)
    a = build_demo_data(tmp_path / "a", **kwargs)
    b = build_demo_data(tmp_path / "b", **kwargs)
    for shard in ("00000.tar", "00001.tar"):
        assert (a.root / "web" / shard).read_bytes() == (b.root / "web" / shard).read_bytes()
