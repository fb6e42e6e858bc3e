"""The bootstrapping study as the runs quote it: the plan's criterion note and the report's
place on the curated-size curve."""

from __future__ import annotations

import pytest

from jestfilter import studies


def cell(name, curated, steps, over_easy, sd=1.0, gain=10.0):
    stat = lambda mean, spread=0.02: {"mean": mean, "sd": spread, "n": 3}  # noqa: E731
    return {"set": name, "curated": curated, "steps": steps, "batch_size": 64, "seeds": [1, 2, 3],
            "reference": stat(0.5 + curated / 20_000), "uniform": stat(0.6), "easy_reference": stat(0.7),
            "learnability": stat(0.7 + over_easy / 100), "gain": stat(gain, 2.0), "over_easy": stat(over_easy, sd)}


@pytest.fixture
def measured(monkeypatch):
    def use(*found):
        monkeypatch.setattr(studies, "cells", lambda: found)
    return use


def test_a_run_where_easy_reference_measured_as_good_is_told_so_at_start(measured):
    measured(cell("fashion", 500, 600, -1.0), cell("fashion", 8000, 600, +0.5), cell("fashion", 500, 1800, +6.0))
    note = studies.criterion_note("learnability", 600, 64)
    assert note.startswith("note: in runs this long or longer the bootstrapping study measured learnability no "
                           "better than easy_reference")
    assert "fashion -1.0 to +0.5 points over 2 curated sizes at 600 × 64" in note
    assert "--method easy_reference" in note
    assert "learnability runs as asked" in note
    # a longer run falls where learnability measured ahead (1800 steps: +6 ± 1): nothing to say
    assert studies.criterion_note("learnability", 1200, 64) is None
    # the same steps at a 4× batch train on 4× the examples: that is the 1800-step cell too
    assert studies.criterion_note("learnability", 600, 256) is None


def test_no_note_beyond_what_was_measured_or_for_other_methods(measured):
    measured(cell("fashion", 500, 600, -1.0), cell("symbols", 500, 600, +20.0, sd=5.0))
    assert studies.criterion_note("learnability", 600, 64) is None  # learnability ahead on one set
    measured(cell("fashion", 500, 600, -1.0))
    assert studies.criterion_note("learnability", 5000, 64) is None  # longer than anything measured
    measured(cell("fashion", 500, 1800, -1.0), cell("symbols", 500, 600, -1.0))
    assert studies.criterion_note("learnability", 1200, 64) is None  # symbols was never measured that long
    assert "fashion -1.0 points at 1 curated size at 1800 × 64" in studies.criterion_note("learnability", 600, 64)
    assert studies.criterion_note("easy_reference", 600, 64) is None
    assert studies.criterion_note("uniform", 600, 64) is None
    measured()
    assert studies.criterion_note("learnability", 600, 64) is None


def test_the_report_places_a_run_on_the_curve_only_at_a_measured_size(measured, tmp_path):
    from jestfilter.report.page import curated_curve

    measured(cell("fashion", 500, 600, -1.0), cell("fashion", 2000, 600, +0.5, gain=12.0),
             cell("fashion", 500, 1800, +6.0))
    runs = {"learnability": {"zeroshot_top1": 0.75}, "uniform": {"zeroshot_top1": 0.62}}
    metrics = {"final": runs["learnability"],
               "reference": {"zeroshot_top1": 0.7, "rows_read": 25_600, "passes": 12.8}}  # 2,000 pairs
    lines = "\n".join(curated_curve(metrics, runs, tmp_path))
    assert "measured 2,000 curated pairs on its `fashion` set (600 learner steps, 3 seeds)" in lines
    assert "JEST − uniform +12.0 ± 2.0 points" in lines
    assert "This run (2,000 curated pairs): reference 0.700, JEST − uniform +13.0 points" in lines
    assert (tmp_path / "curated_curve.png").stat().st_size > 1000

    metrics["reference"]["rows_read"] = 12.8 * 500  # 500 pairs: the 600-step curve, which has two sizes
    assert "measured 500 curated pairs on its `fashion` set (600 learner steps" in "\n".join(
        curated_curve(metrics, runs, tmp_path))
    metrics["reference"]["rows_read"] = 12.8 * 3000  # 3,000 pairs: not measured
    assert curated_curve(metrics, runs, tmp_path) == []
    metrics["reference"] = {"zeroshot_top1": 0.7}  # a reused reference: its curated set is unknown
    assert curated_curve(metrics, runs, tmp_path) == []
