"""`bootstrap` and `train` under `torchrun --nproc_per_node=2` (gloo, CPU) on a tiny real demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import open_clip
import polars as pl
import pytest

from jestfilter.datasets.demo import build_demo_data
from jestfilter.data.shards import split_member_name
from conftest import kept_keys

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
TINY = ["--precision", "fp32", "--steps", "12", "--reference-steps", "6", "--batch-size", "16", "--n-chunks", "4",
        "--eval-every", "6", "--checkpoint-every", "3", "--samples-per-shard", "50", "--workers", "0",
        "--no-progress", "--compare", "none"]
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(ROOT), "JESTFILTER_DIST_TIMEOUT": "60"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # 5 web shards of 100 over 2 ranks: one rank reads 300 a pass, the other 200, so their passes
    # end at different steps and the loop must keep them in lock-step
    root = tmp_path_factory.mktemp("demo")
    return build_demo_data(root, curated=200, web=500, eval=100, samples_per_shard=100, progress=False)


def torchrun(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, "-m", "jestfilter", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=300, **kwargs)


def bootstrap_args(demo, out, *extra: str) -> list[str]:
    return ["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(demo.eval),
            "--out", str(out), *TINY, *extra]



def tar_keys(path: Path) -> list[str]:
    keys, key = [], None
    with tarfile.open(path) as tar:
        for name in tar.getnames():
            new = split_member_name(name, key)[0]
            if new != key:
                keys.append(new)
            key = new
    return keys


@pytest.fixture(scope="module")
def finished_run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = torchrun(*bootstrap_args(demo, out, "--filtered-rule", "top"))  # the rule that ranks across passes
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_each_rank_writes_the_top_share_of_the_samples_it_read_into_its_own_shards(finished_run):
    out, _ = finished_run
    filtered = out / "filtered"
    shards = sorted(filtered.glob("*.tar"))
    assert {p.name[:13] for p in shards} == {"filtered-r000", "filtered-r001"}
    in_shards = [key for shard in shards for key in tar_keys(shard)]
    assert len(in_shards) == len(set(in_shards))  # no key twice, within or across ranks
    sizes = json.loads((filtered / "sizes.json").read_text())
    assert sizes == {p.name: len(tar_keys(p)) for p in shards}
    for rank in (0, 1):  # each rank: 20 % (1 − f) of the samples it read, of the best mean learnability
        rows = pl.read_parquet(filtered / "manifest.parquet" / f"rank-0000{rank}-part-*.parquet")
        pool = rows.filter(pl.col("decision") != "rejected").group_by("key").agg(pl.col("learnability").mean())
        mine = [key for shard in shards if shard.name.startswith(f"filtered-r00{rank}") for key in tar_keys(shard)]
        assert len(mine) == round(0.2 * pool.height)
        assert pool.filter(pl.col("key").is_in(mine))["learnability"].min() >= pool.filter(
            ~pl.col("key").is_in(mine))["learnability"].max() - 1e-4
    assert (filtered / "_SUCCESS").exists()


def test_manifest_has_every_sample_once_per_pass_and_global_b_per_step(finished_run):
    out, _ = finished_run
    parts = out / "filtered" / "manifest.parquet"
    manifest = pl.read_parquet(parts)
    assert manifest.group_by(["key", "pass"]).len()["len"].max() == 1
    # the rank that ran out first cut the other's rows to its own count; those rows are recorded
    surplus = manifest.filter(pl.col("reason") == "short_super_batch")
    assert surplus.height > 0 and (surplus["decision"] == "dropped").all()
    ranks = [pl.read_parquet(parts / f"rank-0000{r}-part-*.parquet") for r in (0, 1)]
    per_rank = [m.filter(pl.col("decision") != "rejected", pl.col("reason").is_null()).group_by("step").agg(
        (pl.col("decision") == "kept").sum().alias("kept"), pl.len().alias("scored")).sort("step") for m in ranks]
    assert per_rank[0]["step"].to_list() == per_rank[1]["step"].to_list() == list(range(12))
    # every step scores as many rows and keeps as many on each rank: b/2 of B/2 = 40 when full
    assert per_rank[0]["scored"].to_list() == per_rank[1]["scored"].to_list()
    assert per_rank[0]["kept"].to_list() == per_rank[1]["kept"].to_list()
    for row in per_rank[0].iter_rows(named=True):
        assert 2 * row["kept"] == (16 if row["scored"] == 40 else round(2 * row["scored"] * 0.2) // 8 * 8)
    assert any(row["scored"] < 40 for row in per_rank[0].iter_rows(named=True))


def test_models_load_and_rank_zero_alone_writes_metrics(finished_run):
    out, result = finished_run
    for name in ("reference", "final"):
        assert open_clip.create_model(f"local-dir:{out / name}").logit_bias is not None
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    assert metrics["final"]["examples_seen"] == (manifest["decision"] == "kept").sum()  # over both ranks
    assert metrics["final"]["steps"] == 12
    surplus = (manifest["reason"] == "short_super_batch").sum()
    assert metrics["data"]["dropped_by_reason"] == {"short_super_batch": surplus}
    assert result.stdout.count("report: ") == 1 and result.stdout.count("reference: zero-shot") == 1


def test_killed_job_resumes_every_rank_to_the_same_kept_samples(demo, tmp_path, finished_run):
    reference_out, _ = finished_run
    out = tmp_path / "killed"
    process = subprocess.Popen([*TORCHRUN, "-m", "jestfilter", *bootstrap_args(demo, out)], cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = out / "checkpoints" / "learnability.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both ranks at once
    process.wait()
    assert not (out / "metrics.json").exists(), "the job finished before it could be killed"
    result = torchrun(*bootstrap_args(demo, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert kept_keys(out) == kept_keys(reference_out)
    # the default rule, first-pass, wrote what the ranks kept in pass 0, each sample once, across the kill
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    first = manifest.filter((pl.col("decision") == "kept") & (pl.col("pass") == 0))["key"]
    written = [key for shard in sorted((out / "filtered").glob("*.tar")) for key in tar_keys(shard)]
    assert sorted(written) == sorted(first.unique()) and len(written) == len(set(written))
    a = json.loads((out / "metrics.json").read_text())["final"]
    b = json.loads((reference_out / "metrics.json").read_text())["final"]
    assert a["curve"] == b["curve"]


def test_train_under_torchrun_on_the_filtered_shards(finished_run, demo, tmp_path):
    out, _ = finished_run
    shards = [str(p) for p in sorted((out / "filtered").glob("*.tar"))]
    result = torchrun("train", "--shards", *shards, "--out", str(tmp_path / "t"), "--eval", str(demo.eval),
                      "--steps", "4", "--batch-size", "4", "--checkpoint-every", "2", "--workers", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["examples_seen"] == 16  # the smallest rank's share holds 10
    assert open_clip.create_model(f"local-dir:{tmp_path / 't' / 'final'}") is not None
    assert not list((tmp_path / "t").glob("checkpoint*.pt"))  # every rank's part goes after a successful run


def test_fewer_shards_than_ranks_fails_fast(demo, tmp_path):
    one_shard = sorted((Path(demo.eval)).glob("*.tar"))[:1]
    result = torchrun("train", "--shards", str(one_shard[0]), "--out", str(tmp_path / "t"), "--steps", "2",
                      "--batch-size", "8", "--workers", "0")
    assert result.returncode != 0
    assert "1 shard(s) for 2 ranks" in result.stderr


@pytest.mark.parametrize("mode, message", [("exit", "Connection"), ("hang", "Timed out")])
def test_a_rank_that_stops_ends_the_job_instead_of_hanging(mode, message):
    started = time.perf_counter()
    result = subprocess.run([*TORCHRUN, str(ROOT / "tests" / "dist_stuck_rank.py"), mode], capture_output=True,
                            text=True, cwd=ROOT, env={**ENV, "JESTFILTER_DIST_TIMEOUT": "5"}, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert time.perf_counter() - started < 60  # the rank left behind gave up after 5 s, not 30 min
