"""A run's layout decides when a stage is done; a BatchPlan decides b, B and f; the arms are
built once from the config."""

from __future__ import annotations

import pytest

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.pipeline import RunLayout, build_arms
from jestfilter.selection.batches import BatchPlan
from jestfilter.train.schedule import StepPlan


def test_a_stage_that_trains_a_model_is_done_only_with_its_record_and_its_folder(tmp_path):
    layout = RunLayout(tmp_path, main="learnability")
    layout.runs.mkdir()
    for stage in ("reference", "learnability", "uniform"):
        layout.write(stage, {"zeroshot_top1": 0.5})
    assert not layout.done("reference") and not layout.done("learnability")
    assert layout.done("uniform")  # a compared arm leaves no model folder
    layout.reference.mkdir()
    layout.final.mkdir()
    assert layout.done("reference") and layout.done("learnability")
    assert not layout.finished(["learnability", "uniform"])  # no metrics.json yet
    layout.metrics.write_text("{}")
    assert layout.finished(["learnability", "uniform"])
    assert layout.round(2).out == tmp_path / "round-2"


def test_arms_say_once_which_is_main_offline_and_needs_the_reference():
    arms = build_arms(BootstrapConfig(compare=["uniform", "clip_score", "learnability"]))
    assert arms.names == ["learnability", "uniform", "clip_score"]
    assert arms.main.name == "learnability" and arms.main.writes_filtered
    clip = arms.named("clip_score")
    assert clip.offline and clip.needs_reference and clip.settings.method == "uniform" and not clip.main
    assert not arms.named("uniform").needs_reference and arms.need_reference
    assert arms.reference.method == "uniform"


def test_a_batch_plan_owns_b_big_b_and_f():
    plan = BatchPlan(64, 0.8, chunks=16)
    assert plan.super_batch == 320 and BatchPlan(64, 0.8, selects=False).super_batch == 64
    assert BatchPlan.keeping(64, 330).super_batch == 330
    with pytest.raises(ValueError, match="does not split into 16 chunks"):
        BatchPlan(60, 0.8, chunks=16).check()
    with pytest.raises(ValueError, match="does not split into 3 ranks"):
        BatchPlan(64, 0.8, ranks=3).check()


def test_the_estimate_reads_what_the_steps_read_under_a_filter_ratio_schedule():
    constant = StepPlan(64, 0.8, 100)
    assert constant.mean_super_batch() == 320
    falling = StepPlan(64, 0.8, 100, filter_ratio_end=0.5)
    assert 128 < falling.mean_super_batch() < 320
    assert falling.mean_super_batch() == pytest.approx(sum(falling(s) for s in range(100)) / 100)
    settings = TrainSettings(filter_ratio_end=0.5)
    settings.validate()
