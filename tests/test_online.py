"""The online training loop on its own: what each method trains on, Flexi scoring, bookkeeping."""

from __future__ import annotations

import pytest
import torch

from jestfilter.config import TrainSettings
from jestfilter.data import expand_shards, read_manifest
from jestfilter.datasets.demo import build_demo_data
from jestfilter.embeddings import build_cache
from jestfilter.models import create_model
from jestfilter.sinks import FilteredOutput
from jestfilter.train.loop import NOT_SELECTING, OnlineTrainer
from jestfilter.train.schedule import StepPlan, evaluations


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"), curated=100, web=400, eval=50,
                           samples_per_shard=100, progress=False)


@pytest.fixture(scope="module")
def reference_cache(demo, tmp_path_factory):
    torch.manual_seed(1)
    reference = create_model("jest-tiny")
    return build_cache(reference, expand_shards(demo.web), tmp_path_factory.mktemp("cache"), progress=False)


def trainer(demo, tmp_path, method, cache=None, steps=3, **settings):
    torch.manual_seed(0)
    bundle = create_model("jest-tiny")
    run = TrainSettings(steps=steps, batch_size=16, method=method, n_chunks=4, workers=0, shuffle_buffer=50,
                        eval_every=1000, checkpoint_every=1000, **settings)
    out = tmp_path / method
    return OnlineTrainer(bundle, demo.web, run, checkpoint=out / "ckpt.pt", reference=cache,
                         sink=FilteredOutput(out / "filtered", 1000), progress=False)


def test_uniform_trains_on_every_sample_it_reads(demo, tmp_path):
    run = trainer(demo, tmp_path, "uniform")
    summary = run.run()
    run.sink.close()
    manifest = read_manifest(tmp_path / "uniform" / "filtered")
    assert summary["examples_seen"] == 48 and (manifest["decision"] == "kept").all()


@pytest.mark.parametrize("method", ["learnability", "easy_reference", "hard_learner", "independent"])
def test_selection_methods_keep_b_of_each_super_batch_of_B(demo, tmp_path, reference_cache, method):
    cache = None if method == "hard_learner" else reference_cache  # hard_learner needs no reference
    run = trainer(demo, tmp_path, method, cache)
    summary = run.run()
    run.sink.close()
    manifest = read_manifest(tmp_path / method / "filtered")
    assert manifest.height == 3 * 80  # B = b / (1 - 0.8) = 80 read per step
    assert (manifest["decision"] == "kept").sum() == summary["examples_seen"] == 3 * 16
    scored = "reference_loss" if method == "easy_reference" else "learner_loss"
    assert manifest[scored].is_not_nan().all() and manifest[scored].null_count() == 0
    kept = manifest.filter(manifest["decision"] == "kept")
    # each kept sample says in which chunk, and by which score, it was drawn
    assert kept["chunk"].null_count() == 0 and kept["selection_score"].null_count() == 0
    assert kept["chunk"].max() == (3 if method != "independent" else 0)  # 4 chunks; per-example: one draw
    assert manifest.filter(manifest["decision"] == "dropped")["chunk"].null_count() == 3 * 64


def test_flexi_scores_at_the_coarse_patch_size_for_fewer_flops(demo, tmp_path, reference_cache):
    full = trainer(demo, tmp_path / "a", "learnability", reference_cache)
    flexi = trainer(demo, tmp_path / "b", "learnability", reference_cache, flexi="train", flexi_patch_size=14)
    scoring = trainer(demo, tmp_path / "c", "learnability", reference_cache, flexi="score", flexi_patch_size=14)
    full_summary, flexi_summary, scoring_summary = full.run(), flexi.run(), scoring.run()
    assert flexi_summary["examples_seen"] == full_summary["examples_seen"] == scoring_summary["examples_seen"]
    # coarse scoring alone saves the scoring FLOPs; co-training half the batch coarse saves more
    assert flexi_summary["flops"] < scoring_summary["flops"] < 0.8 * full_summary["flops"]
    assert (scoring.score_patch_size, scoring.train_patch_size) == (14, None)
    assert (flexi.score_patch_size, flexi.train_patch_size) == (14, 14)
    assert all(torch.isfinite(torch.tensor(flexi.history.losses)))


def test_a_method_that_needs_the_reference_refuses_to_start_without_it(demo, tmp_path):
    with pytest.raises(ValueError, match="reference"):
        trainer(demo, tmp_path, "easy_reference", cache=None)


def test_a_reference_cache_from_another_model_is_refused(demo, reference_cache):
    torch.manual_seed(1)
    same = create_model("jest-tiny")
    reference_cache.check_model(expand_shards(demo.web), same.model)
    with torch.no_grad():
        same.model.logit_bias.fill_(-3.0)  # e.g. a reference trained further since the cache was written
    with pytest.raises(ValueError, match="another model"):
        reference_cache.check_model(expand_shards(demo.web), same.model)


def test_after_select_until_the_learner_reads_and_trains_on_plain_batches_of_b(demo, tmp_path, reference_cache):
    run = trainer(demo, tmp_path, "learnability", reference_cache, steps=4, select_until=0.5)
    summary = run.run()
    run.sink.close()
    manifest = read_manifest(tmp_path / "learnability" / "filtered")
    assert manifest.height == 2 * 80 + 2 * 16  # B = 80 read in the 2 selecting steps, then b = 16
    late = manifest.filter(manifest["step"] >= 2)
    assert (late["reason"] == NOT_SELECTING).all() and late["learner_loss"].is_null().all()
    assert (manifest["decision"] == "kept").sum() == 2 * 16  # only what was selected goes to filtered/
    assert summary["examples_seen"] == 4 * 16
    assert summary["time_breakdown"]["steps"] == 4


def test_a_filter_ratio_schedule_reads_less_as_it_lowers_f():
    plan = StepPlan(batch_size=16, filter_ratio=0.8, select_steps=5, filter_ratio_end=0.5, ranks=2)
    assert [plan.super_batch(step) for step in range(7)] == [80, 58, 46, 38, 32, 16, 16]
    assert all(plan(step) * 2 == plan.super_batch(step) for step in range(7))  # B splits over the ranks
    assert not plan.selects(5)
    assert StepPlan(16, 0.8, 5, reads_extra=False).super_batch(0) == 16  # uniform reads b


def test_the_plan_says_how_many_loader_workers_keep_up_with_the_device(web_shards):
    from jestfilter.models import create_model
    from jestfilter.plan import Timing

    # the device scores 320 rows at 0.1 ms and trains 64 at 1 ms: 0.096 s a step, 3,333 rows/s
    timing = Timing(forward=1e-4, train=1e-3, decode=0.9e-3, read=1e-4, preprocess=0.0)
    assert timing.step(320, 64, scored=True) == pytest.approx(0.096)
    # W workers give W / (W·read + decode) rows/s: 3,333 needs W ≥ 3,333 · 0.9e-3 / (1 − 3,333 · 1e-4) = 4.5
    assert timing.workers_needed(320, 64, scored=True) == 5
    assert timing.workers_needed(64, 64, scored=False) == 1  # uniform: 1,000 rows/s, 0.9 / (1 − 0.1) = 1
    assert Timing(1e-4, 1e-3, 1e-3, read=4e-4).workers_needed(320, 64, True) is None  # reading alone is too slow
    measured = Timing.measure(create_model("jest-tiny"), str(web_shards.paths[0]), batch=8, score_patch_size=14)
    assert min(measured.forward, measured.train, measured.decode, measured.read, measured.score) > 0
    assert measured.workers_needed(40, 8, True) >= 1


def test_the_plan_counts_the_evaluations_a_run_makes(demo, tmp_path):
    run = trainer(demo, tmp_path, "uniform", steps=10)
    run.settings.eval_every = 4  # every 4 steps, every step in the last fifth, and at the end
    run.evaluate = lambda bundle: {"zeroshot_top1": 0.0}
    steps = []
    run.on_evaluation = lambda step, total, metrics: steps.append(step)
    run.run()
    assert steps == [0, 4, 8, 9, 10]
    assert evaluations(10, 4) == 5 and evaluations(600, 100) == 10


def test_scheduled_run_selects_b_from_each_super_batch_it_reads(demo, tmp_path, reference_cache):
    run = trainer(demo, tmp_path, "learnability", reference_cache, steps=3, filter_ratio_end=0.5)
    summary = run.run()
    run.sink.close()
    manifest = read_manifest(tmp_path / "learnability" / "filtered")
    assert manifest.group_by("step").len().sort("step")["len"].to_list() == [80, 46, 32]
    assert (manifest["decision"] == "kept").sum() == summary["examples_seen"] == 3 * 16


def test_a_uniform_run_with_a_filter_ratio_schedule_trains_on_plain_batches(demo, tmp_path, reference_cache):
    # bootstrap passes the main method's schedule on to every compared run, uniform included
    summary = trainer(demo, tmp_path, "uniform", reference_cache, steps=2, filter_ratio_end=0.5).run()
    assert summary["examples_seen"] == 2 * 16 and summary["rows_read"] == 2 * 16


def test_run_summary_says_where_the_time_went(demo, tmp_path, reference_cache):
    summary = trainer(demo, tmp_path, "learnability", reference_cache).run()
    parts = summary["time_breakdown"]
    for part in ("load", "preprocess", "score", "reference", "select", "train", "write"):
        assert parts[part] > 0, part
    assert set(parts["loader_workers"]) == {"read", "decode", "tokenise"}
    step_parts = sum(parts[p] for p in ("load", "preprocess", "score", "reference", "select", "train", "write"))
    unaccounted = summary["train_seconds"] - step_parts  # bookkeeping between the parts
    assert -0.01 <= unaccounted < max(0.5, 0.25 * summary["train_seconds"])


def test_flexi_logs_how_well_coarse_scores_agree_with_full_ones(demo, tmp_path, reference_cache):
    run = trainer(demo, tmp_path, "learnability", reference_cache, steps=2, flexi="train", score_context=6)
    run.settings.eval_every = 1
    summary = run.run()
    agreement = summary["score_agreement"]
    assert [row["step"] for row in agreement] == [1, 2]
    assert all(-1 <= row["spearman"] <= 1 and 0 <= row["overlap"] <= 1 for row in agreement)
    assert run.score_patch_size == 14  # the divisor of 28 nearest to 2 × 7


def test_bf16_trains_fp32_weights_and_selects_in_fp32(demo, tmp_path, reference_cache):
    run = trainer(demo, tmp_path, "learnability", reference_cache, steps=2, precision="bf16")
    summary = run.run()
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert all(torch.isfinite(torch.tensor(run.history.losses))) and summary["examples_seen"] == 32
    pixels = run.bundle.preprocess.to_model(torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
    learner = run.learner_embeddings(pixels, run.bundle.tokenizer(["a dress"] * 4))
    assert learner.image.dtype == learner.text.dtype == torch.float32


def test_a_reference_cache_from_a_model_with_other_weights_but_the_same_scale_and_bias_is_refused(
        demo, tmp_path):
    torch.manual_seed(1)
    reference = create_model("jest-tiny")
    other = create_model("jest-tiny")  # the same scale and bias, another image tower
    other.model.visual.load_state_dict(create_model("jest-tiny").model.visual.state_dict())
    assert other.model.logit_bias.item() == reference.model.logit_bias.item()
    shards = expand_shards(demo.web)
    cache = build_cache(other, shards, tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="was made by another model") as error:
        cache.check_model(shards, reference.model)
    assert "\n" not in str(error.value)
    build_cache(reference, shards, tmp_path / "own", progress=False).check_model(shards, reference.model)


def test_the_plan_counts_evaluations_without_visiting_every_step():
    from jestfilter.train.schedule import evaluation_due

    for steps in (1, 2, 7, 10, 99, 250, 601):
        for every in (1, 3, 4, 10, 100):
            assert evaluations(steps, every) == 1 + sum(evaluation_due(s, steps, every) for s in range(1, steps + 1))
    assert evaluations(10**18, 100) == 1 + 8 * 10**17 // 100 + (10**18 - 8 * 10**17) // 25  # at once


def test_a_kept_manifest_run_records_kept_rows_and_counts_every_drop(demo, tmp_path, reference_cache):
    from jestfilter.data.manifest import scan_dropped_counts, scan_manifest
    from jestfilter.results import manifest_counts, pool_size
    from jestfilter.sinks import read_pool

    run = trainer(demo, tmp_path, "learnability", reference_cache, steps=7)  # 7 × 80 rows: more than one pass
    run.sink = FilteredOutput(tmp_path / "kept", 1000, rule="first-pass", manifest="kept")
    summary = run.run()
    run.sink.close()
    manifest, dropped = scan_manifest(tmp_path / "kept"), scan_dropped_counts(tmp_path / "kept")
    assert set(manifest.collect()["decision"]) == {"kept"}
    counts = manifest_counts(manifest, dropped)
    assert counts["decisions"] == {"kept": 7 * 16, "dropped": 7 * 64} and counts["rows"] == summary["rows_read"]
    assert pool_size(manifest, dropped) == 400  # the demo's web pool, read whole in the first pass
    pool = read_pool(tmp_path / "kept")
    assert pool.height == counts["unique_kept"] and pool["passes"].null_count() == pool.height
