"""The validation suite's other sets (`demo-data --set digits|symbols|clipart`): real images from
Debian packages, the demo's noise kinds, captions that name the class and more, held-out eval.
Each test skips, saying what to install, where its package is missing."""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pytest
import webdataset as wds
from PIL import Image

from jestfilter.cli import main
from jestfilter.datasets.demo import NOISE_KINDS, SETS, build_demo_data

SMALL = dict(curated=120, web=300, eval=104, samples_per_shard=100, progress=False)


def available(name: str) -> None:
    try:
        SETS[name].locate(None)
    except FileNotFoundError as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module", params=["digits", "symbols", "clipart"])
def built(request, tmp_path_factory):
    available(request.param)
    root = tmp_path_factory.mktemp(request.param)
    return request.param, build_demo_data(root / "a", set=request.param, **SMALL), root


def samples(folder) -> dict[str, dict]:
    return {s["__key__"]: s for shard in sorted(folder.glob("*.tar")) for s in wds.WebDataset(str(shard),
                                                                                              shardshuffle=False)}


def test_a_set_is_built_like_the_demo_and_repeats_byte_for_byte(built):
    name, data, root = built
    again = build_demo_data(root / "b", set=name, **SMALL)
    for split in ("curated", "web", "eval"):
        tars = sorted((data.root / split).glob("*.tar"))
        assert tars and [t.read_bytes() for t in tars] == [t.read_bytes() for t in
                                                           sorted((again.root / split).glob("*.tar"))]
    assert data.kind_counts == {"clean": 120, "mismatched": 63, "uninformative": 36, "junk_image": 27,
                                "duplicate": 18, "partial": 36}
    assert json.loads((data.root / "demo.json").read_text())["params"]["set"] == name


def test_eval_names_every_class_and_its_images_are_the_sets_own(built):
    name, data, _ = built
    source = SETS[name]
    classnames = (data.eval / "classnames.txt").read_text().splitlines()
    assert classnames == source.classnames and len(set(classnames)) == len(classnames)
    if name == "symbols":
        assert len(classnames) >= 50  # the colour set with many classes
    templates = (data.eval / "templates.txt").read_text().splitlines()
    assert templates and all("{}" in t for t in templates)
    evals = samples(data.eval)
    assert len(evals) == SMALL["eval"] and {int(s["cls"]) for s in evals.values()} <= set(range(len(classnames)))
    image = Image.open(io.BytesIO(next(iter(evals.values()))["jpg"]))
    assert image.size == (28, 28) and image.mode == "RGB"
    if name == "symbols":  # ink and paper differ, not a grey picture
        pixels = np.asarray(image, dtype=int)
        assert (pixels.max(axis=(0, 1)) - pixels.min(axis=(0, 1))).max() > 60


def test_clean_captions_name_the_class_and_often_more(built):
    name, data, _ = built
    truth = pl.read_parquet(data.truth)
    clean = truth.filter(pl.col("kind") == "clean")
    words = {"digits": lambda row: SETS[name].classnames[row["true_class"]] in row["caption"]
             or str(row["true_class"]) in row["caption"],
             "symbols": lambda row: any(w in row["caption"] for w in SETS[name].words[row["true_class"]]),
             "clipart": lambda row: SETS[name].classnames[row["true_class"]] in row["caption"]}
    assert all(words[name](row) for row in clean.iter_rows(named=True))
    assert clean["caption"].n_unique() > 0.5 * clean.height  # not one template per class
    mismatched = truth.filter(pl.col("kind") == "mismatched")
    assert (mismatched["caption_class"] != mismatched["true_class"]).all()
    assert set(truth["kind"]) == {"clean", *NOISE_KINDS}


def test_the_cli_builds_a_set_and_refuses_an_unknown_one(tmp_path, capsys):
    available("digits")
    assert main(["demo-data", str(tmp_path / "d"), "--set", "digits", "--curated", "20", "--web", "50",
                 "--eval", "20"]) == 0
    assert "web          50" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo-data", str(tmp_path / "e"), "--set", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_a_missing_source_says_what_to_install(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--set", "digits", "--source", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install opencv-doc" in err and len(err.strip().splitlines()) == 1
