"""`bootstrap --rounds 2` and the offline baselines in `--compare` on a tiny real demo: both rounds
with the one-round layout, round 2's reference is round 1's final, a killed round 2 resumes,
the rounds stop early when a round does not beat its reference."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from jestfilter.cli import main
from jestfilter.data import expand_shards
from jestfilter.datasets.demo import build_demo_data
from jestfilter.scores import pool_scores
from conftest import kept_keys

TINY = ["--precision", "fp32", "--steps", "12", "--reference-steps", "6", "--batch-size", "16", "--n-chunks", "4", "--eval-every", "6",
        "--checkpoint-every", "3", "--samples-per-shard", "50", "--workers", "0", "--no-progress"]
COMPARE = ["--compare", "uniform,clip_score,neg_clip_loss"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"), curated=200, web=600, eval=100, samples_per_shard=100,
                           progress=False)


def args(demo, out, rounds: int = 2, *extra):
    return ["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(demo.eval), "--out", str(out),
            *TINY, "--rounds", str(rounds), *COMPARE, *extra]


def read(path: Path) -> dict:
    return json.loads(path.read_text())



@pytest.fixture(scope="module")
def two_rounds(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("rounds")
    assert main(args(demo, out, 2, "--no-early-stop")) == 0  # a tiny round 1 need not beat its reference
    return out


def test_two_rounds_each_with_the_one_round_layout_and_a_summary_per_round(two_rounds):
    out = two_rounds
    for k in (1, 2):
        folder = out / f"round-{k}"
        for part in ("reference", "final", "filtered/sizes.json", "metrics.json", "report/report.md"):
            assert (folder / part).exists(), (k, part)
    metrics = read(out / "metrics.json")
    assert [s["round"] for s in metrics["rounds"]] == [1, 2] and metrics["stopped_early"] is None
    one, two = read(out / "round-1" / "metrics.json"), read(out / "round-2" / "metrics.json")
    # round 2's reference is round 1's final model, saved and loaded again: the same zero-shot accuracy
    assert two["config"]["reference"] == f"local-dir:{out / 'round-1' / 'final'}"
    assert two["reference"]["zeroshot_top1"] == one["final"]["zeroshot_top1"]
    assert two["reference"]["retrieval_r1"] == one["final"]["retrieval_r1"]
    # ... whose embeddings of the web data are computed again, into a cache named by that model
    assert {p.name for p in (out / "round-1" / "cache").iterdir()} != {p.name for p in (out / "round-2" / "cache").iterdir()}
    for k, summary in zip((1, 2), metrics["rounds"]):
        run = read(out / f"round-{k}" / "metrics.json")
        assert summary["final"]["zeroshot_top1"] == run["final"]["zeroshot_top1"]
        assert summary["final"]["examples_seen"] == run["final"]["examples_seen"] > 0
        assert summary["improved"] == (run["final"]["zeroshot_top1"] > run["reference"]["zeroshot_top1"])
    assert metrics["rounds"][0]["reference_training_flops"] > 0 == metrics["rounds"][1]["reference_training_flops"]
    # uniform does not use the reference: round 2 reuses round 1's run rather than training it again
    assert two["compare"]["uniform"] == one["compare"]["uniform"]
    report = (out / "report" / "report.md").read_text()
    assert "../round-2/report/report.md" in report and (out / "report" / "rounds.png").stat().st_size > 1000


def test_offline_baselines_train_uniformly_on_the_top_of_the_web_by_the_reference(two_rounds, demo):
    one = read(two_rounds / "round-1" / "metrics.json")
    cache = next((two_rounds / "round-1" / "cache").iterdir())
    pool = pool_scores(cache, expand_shards(demo.web))
    for method in ("clip_score", "neg_clip_loss"):
        run = one["compare"][method]
        assert run["method"] == method and run["offline_kept"] == round(0.2 * pool.height)
        assert run["steps"] == one["final"]["steps"] and run["examples_seen"] > 0.9 * one["compare"]["uniform"]["examples_seen"]
        assert method in one["speedup"]


def test_a_killed_round_two_resumes_and_ends_as_an_uninterrupted_run(two_rounds, demo, tmp_path):
    out = tmp_path / "killed"
    shutil.copytree(two_rounds / "round-1", out / "round-1")  # round 1 done, as after a kill in round 2
    before = (out / "round-1" / "final" / "open_clip_model.safetensors").stat().st_mtime_ns
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "jestfilter", *args(demo, out, 2, "--no-early-stop")],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    checkpoint = out / "round-2" / "checkpoints" / "learnability.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "round-2" / "metrics.json").exists(), "round 2 finished before it could be killed"
    assert main(args(demo, out, 2, "--no-early-stop")) == 0
    assert (out / "round-1" / "final" / "open_clip_model.safetensors").stat().st_mtime_ns == before
    assert kept_keys(out / "round-2") == kept_keys(two_rounds / "round-2")
    assert read(out / "round-2" / "metrics.json")["final"]["curve"] == \
        read(two_rounds / "round-2" / "metrics.json")["final"]["curve"]
    assert len(read(out / "metrics.json")["rounds"]) == 2


def test_rounds_stop_early_when_a_round_does_not_beat_its_reference(two_rounds, demo, tmp_path):
    out = tmp_path / "stopped"
    shutil.copytree(two_rounds, out, ignore=shutil.ignore_patterns("report", "metrics.json"))
    for k in (1, 2):
        shutil.copy(two_rounds / f"round-{k}" / "metrics.json", out / f"round-{k}" / "metrics.json")
    for k, gain in ((1, 0.1), (2, 0.0)):  # round 1 beats its reference, round 2 is no better
        metrics = read(out / f"round-{k}" / "metrics.json")
        metrics["final"]["zeroshot_top1"] = metrics["reference"]["zeroshot_top1"] + gain
        (out / f"round-{k}" / "metrics.json").write_text(json.dumps(metrics))
    assert main(args(demo, out, rounds=3)) == 0
    summary = read(out / "metrics.json")
    assert [s["improved"] for s in summary["rounds"]][-1] is False and len(summary["rounds"]) == 2
    assert "round 3 not run" in summary["stopped_early"] and not (out / "round-3").exists()
    assert "Stopped early" in (out / "report" / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--rounds", "2", "--method", "uniform"], "rounds"),
    (["--rounds", "0"], "rounds"),
    (["--compare", "clip_scores"], "unknown method"),
])
def test_bad_round_and_compare_arguments_fail_fast_with_one_line(extra, message, tmp_path, capsys):
    assert main(["bootstrap", "--out", str(tmp_path / "o"), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_an_offline_score_as_the_main_method_says_where_it_belongs(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('method = "clip_score"\n')
    assert main(["bootstrap", "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "--compare" in capsys.readouterr().err
