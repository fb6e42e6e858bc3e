"""The report's numbers: noise-kind shares and the extremes grid's bookkeeping."""

import polars as pl
import pytest

from jestfilter.report import kept_by_kind
from jestfilter.sinks import Example, ExtremesTracker


def test_kept_by_kind_compares_web_share_with_training_share():
    # key "a" is in two shards (two img2dataset downloads): each sample keeps its own kind
    truth = pl.DataFrame({"shard": ["0.tar", "1.tar", "0.tar", "0.tar"], "key": ["a", "a", "c", "d"],
                          "kind": ["clean", "clean", "junk_image", "mismatched"]})
    manifest = pl.DataFrame({
        "source_shard": ["web/0.tar", "web/0.tar", "web/1.tar", "web/0.tar", "web/0.tar", "web/0.tar"],
        "key": ["a", "a", "a", "c", "d", "c"],
        "decision": ["kept", "kept", "kept", "kept", "dropped", "rejected"],
    })
    table = {row["kind"]: row for row in kept_by_kind(manifest, truth).iter_rows(named=True)}
    assert table["clean"]["web_share"] == pytest.approx(0.5)
    assert table["clean"]["trained_share"] == pytest.approx(0.75)  # a twice and b once, of 4 kept rows
    assert table["junk_image"]["trained_share"] == pytest.approx(0.25)
    assert table["mismatched"]["trained_share"] == 0  # never kept, still listed


def test_extremes_keep_the_top_and_bottom_once_each_and_survive_a_checkpoint():
    tracker = ExtremesTracker(n=2)
    for value, key in [(1.0, "a"), (5.0, "b"), (-3.0, "c"), (5.0, "b"), (0.0, "d"), (-4.0, "e")]:
        tracker.add(Example(value, key, f"caption {key}", key.encode() * 3))
    assert [e.key for e in tracker.most] == ["b", "a"]
    assert [e.key for e in tracker.least] == ["e", "c"]
    restored = ExtremesTracker(n=2)
    restored.load_state_dict(tracker.state_dict())
    assert restored.most == tracker.most and restored.most[0].image_bytes == b"bbb"


def summary(method, top1, flops, seconds, curve):
    return {"method": method, "zeroshot_top1": top1, "retrieval_class_r1": 0.5, "retrieval_r1": 0.1,
            "examples_seen": curve[-1][0], "web_passes": 2.0, "seconds_per_step": 0.1, "flops": flops,
            "train_seconds": seconds, "curve": curve, "flops_curve": [[x * 3.0, y] for x, y in curve],
            "time_curve": [[x / 100, y] for x, y in curve]}


def test_the_report_says_in_plain_words_whether_it_helped_and_what_it_cost(tmp_path):
    from jestfilter.report import write_report
    from jestfilter.results import costs, speedups

    runs = {"learnability": summary("learnability", 0.74, 9e9, 30.0, [[0, 0.1], [600, 0.7], [1200, 0.74]]),
            "uniform": summary("uniform", 0.64, 3e9, 10.0, [[0, 0.1], [600, 0.5], [1200, 0.64]]),
            "easy_reference": summary("easy_reference", 0.77, 6e9, 20.0, [[0, 0.1], [600, 0.72], [1200, 0.77]])}
    reference = {"zeroshot_top1": 0.70, "retrieval_class_r1": 0.6, "flops": 5e9, "train_seconds": 40.0}
    cost = costs(runs, reference, {"flops": 1e9, "seconds": 4.0},
                 {"learnability": True, "uniform": False, "easy_reference": True})
    metrics = {"final": runs["learnability"], "reference": reference, "costs": cost, "speedup": speedups(runs, cost),
               "seconds": 300.0, "config": {"train": {"seed": 3}},
               "data": {"unique_kept": 40, "filtered": {"rule": "top", "pool": 200, "written": 40, "fraction": 0.2,
                                                        "by_kind": {"clean": {"pool_share": 0.4, "written_share": 0.75}}}}}
    steps = list(range(10)) * 4
    manifest = pl.DataFrame({"key": [f"k{i}" for i in range(40)], "step": steps,
                             "decision": (["kept"] * 10 + ["dropped"] * 30), "reason": [None] * 40,
                             "learnability": [float(i) for i in range(40)], "learner_loss": [1.0] * 40,
                             "reference_loss": [None] * 40}, schema_overrides={"reference_loss": pl.Float32})
    page = write_report(tmp_path, metrics, runs, manifest, None).read_text()
    assert "+10.0 points against uniform" in page
    assert "easy_reference** ended 3.0 points above learnability" in page and "baseline beat the main method" in page
    assert "The learner beat its reference (0.740 against 0.700)" in page
    assert "points below uniform" not in page  # a reference 6 points above uniform's 0.64 is no cause for a note
    assert "| reference training | 5e+09 | 40 |" in page and "| reference embedding pass over the web | 1e+09 | 4 |" in page
    assert "| **learnability: total** (with the reference where it uses it) | 1.5e+10 | 74 |" in page
    assert "| **uniform: total** (with the reference where it uses it) | 3e+09 | 10 |" in page
    assert "sample-passes" in page and "40 distinct samples" in page
    assert "`filtered/` holds 40 of the 200 web samples read (20.0%), chosen by the rule `top`" in page
    assert "| clean | 40.0% | 75.0% |" in page
    for png in ("curves.png", "scores.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000 and png in page


def test_the_report_names_a_reference_that_ended_well_below_uniform(tmp_path):
    from jestfilter.report import write_report

    runs = {"learnability": summary("learnability", 0.180, 9e9, 30.0, [[0, 0.1], [1200, 0.18]]),
            "uniform": summary("uniform", 0.233, 3e9, 10.0, [[0, 0.1], [1200, 0.233]])}
    metrics = {"final": runs["learnability"], "reference": {"zeroshot_top1": 0.181}, "costs": {}, "speedup": {},
               "config": {"train": {"seed": 1}}}  # the suite's clip art, seed 1
    page = write_report(tmp_path, metrics, runs, None, None).read_text()
    assert "**Note:** The reference ended 5.2 points below uniform (0.181 against 0.233)" in page
    assert "More or cleaner curated pairs" in page
