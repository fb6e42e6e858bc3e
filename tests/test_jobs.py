"""Batch jobs over shards (embed, score, filter, dedup, select) on the demo data: one rank and two
ranks give the same outputs, a killed job finishes only what was missing, failures are recorded."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from jestfilter.cli import main
from jestfilter.errors import UsageError
from jestfilter.data import expand_shards, iter_samples
from jestfilter.datasets.demo import build_demo_data
from jestfilter.embeddings import EmbeddingCache
from jestfilter.data.types import RawSample
from jestfilter.jobs.runner import (done_path, my_shards, read_done, read_failures, resolve_placement,
                                    run_shards)
from jestfilter.models import create_model, save_local_dir
from jestfilter.scores import top_fraction

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """6 web shards of 20 (one duplicate group of 7), two random tiny models, their embeddings."""
    root = tmp_path_factory.mktemp("jobs")
    paths = build_demo_data(root / "demo", curated=20, web=120, eval=20, samples_per_shard=20, progress=False)
    for seed, name in ((0, "reference"), (1, "learner")):
        torch.manual_seed(seed)
        save_local_dir(create_model("jest-tiny"), root / name)
    assert main(["embed", "--model", str(root / "reference"), "--shards", paths.web, "--out", str(root / "emb"),
                 "--batch-size", "16"]) == 0
    return root, paths


def cli(*args) -> int:
    return main([str(a) for a in args])


def env_job(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, "-m", "jestfilter", *map(str, args)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **popen)


def same_files(a: Path, b: Path, pattern: str) -> None:
    names = sorted(str(p.relative_to(a)) for p in a.glob(pattern))
    assert names and names == sorted(str(p.relative_to(b)) for p in b.glob(pattern))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def kill_after_first_shard(out: Path, *args) -> dict[str, int]:
    """Start a batch job over the 6 demo shards, SIGKILL it once a shard is done; the done
    markers it left (name → mtime), checked to be some but not all."""
    job = env_job(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(out.glob("*.done.json")) and job.poll() is None:
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.done.json")}
    assert 1 <= len(before) < 6, "the job must be killed mid-run"
    return before


def one_rank_equals_two(base: list, tmp_path: Path) -> None:
    """Run a shard-writing job on one rank (OUT/one) and on two (OUT/two, rank 1 first): the
    merged outputs appear only once both ranks are done, and are byte-identical."""
    assert cli(*base, "--out", tmp_path / "one") == 0
    assert cli(*base, "--out", tmp_path / "two", "--rank", 1, "--world-size", 2) == 0
    assert not (tmp_path / "two" / "sizes.json").exists()  # rank 0 has not finished
    assert cli(*base, "--out", tmp_path / "two", "--rank", 0, "--world-size", 2) == 0
    for pattern in ("*.tar", "sizes.json", "manifest.parquet/*.parquet"):
        same_files(tmp_path / "one", tmp_path / "two", pattern)


def same_embeddings(a: Path, b: Path) -> None:
    """Equal arrays (the npz zip headers carry the time they were written)."""
    names = sorted(p.name for p in a.glob("*.emb.npz"))
    assert names and names == sorted(p.name for p in b.glob("*.emb.npz"))
    for name in names:
        with np.load(a / name) as left, np.load(b / name) as right:
            assert all(np.array_equal(left[k], right[k]) for k in left.files), name


def test_rank_precedence_flags_then_torchrun_then_slurm():
    slurm = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10",
             "SLURM_ARRAY_TASK_COUNT": "3"}
    torchrun = {"RANK": "3", "WORLD_SIZE": "4"}
    assert resolve_placement(1, 2, {**torchrun, **slurm})[:2] == (1, 2)
    assert resolve_placement(None, None, {**torchrun, **slurm})[:2] == (3, 4)
    assert resolve_placement(None, None, slurm)[:2] == (2 * 2 + 1, 6)  # array element 2 of 3, task 1 of 2
    assert resolve_placement(None, None, {"SLURM_PROCID": "2", "SLURM_NTASKS": "4"})[:2] == (2, 4)
    assert resolve_placement(None, None, {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                                          "SLURM_ARRAY_TASK_MAX": "9"})[:2] == (2, 5)
    assert resolve_placement(None, None, {})[:2] == (0, 1)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "4"}):
        with pytest.raises(UsageError):
            resolve_placement(None, None, bad)
    shards = [f"s{i:02d}.tar" for i in range(11)][::-1]
    parts = [my_shards(shards, resolve_placement(r, 3, {})) for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(shards) and parts[1] == ["s01.tar", "s04.tar", "s07.tar", "s10.tar"]


def test_embed_on_two_torchrun_ranks_equals_one_rank_and_is_the_reference_cache(demo, monkeypatch, capsys):
    root, paths = demo
    out = root / "emb-2ranks"
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets them (webdataset reads them too)
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        assert cli("embed", "--model", f"local-dir:{root / 'reference'}", "--shards", paths.web, "--out", out,
                   "--batch-size", 16) == 0
        assert f"rank {rank}/2 (torchrun): 3 done, 0 skipped" in capsys.readouterr().out
    same_embeddings(root / "emb", out)
    samples = [s for s in iter_samples(expand_shards(paths.web)) if isinstance(s, RawSample)][::17]
    looked_up = EmbeddingCache(out).lookup(samples)  # what bootstrap reads
    assert looked_up.image.shape == (len(samples), 64)
    assert torch.allclose(looked_up.image.norm(dim=1), torch.ones(len(samples)), atol=1e-2)


def test_killed_embed_job_reruns_only_the_missing_shards(demo, tmp_path, capsys):
    root, paths = demo
    out = tmp_path / "emb"
    before = kill_after_first_shard(out, "embed", "--model", root / "reference", "--shards", paths.web, "--out", out,
                                    "--batch-size", 16)
    assert cli("embed", "--model", root / "reference", "--shards", paths.web, "--out", out, "--batch-size", "16") == 0
    assert f"{6 - len(before)} done, {len(before)} skipped" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before
    same_embeddings(root / "emb", out)
    assert cli("embed", "--model", root / "reference", "--shards", paths.web, "--out", out) == 0
    assert "0 done, 6 skipped" in capsys.readouterr().out  # a finished job does nothing


def test_score_on_two_ranks_equals_one_rank_and_is_the_pair_loss(demo, tmp_path):
    root, paths = demo
    base = ["score", "--embeddings", root / "emb", "--learner", root / "learner", "--shards", paths.web]
    assert cli(*base, "--out", tmp_path / "one") == 0
    for rank in (1, 0):
        assert cli(*base, "--out", tmp_path / "two", "--rank", rank, "--world-size", 2) == 0
    same_files(tmp_path / "one", tmp_path / "two", "*.scores.parquet")
    scores = pl.read_parquet(tmp_path / "one" / "00002.scores.parquet")
    with np.load(root / "emb" / "00002.emb.npz") as cached:
        logits = cached["scale"] * (cached["image"].astype(np.float64) * cached["text"]).sum(1) + cached["bias"]
        assert scores["key"].to_list() == cached["keys"].tolist()
    assert np.allclose(scores["reference_loss"], np.logaddexp(0, -logits), rtol=1e-4)
    assert np.allclose(scores["learnability"], scores["learner_loss"] - scores["reference_loss"], atol=1e-5)
    assert scores["learnability"].abs().min() > 0  # two different models


@pytest.fixture(scope="module")
def scores(demo):
    root, _ = demo
    assert cli("score", "--embeddings", root / "emb", "--out", root / "scores") == 0
    return root / "scores"


def test_offline_scores_are_the_reference_cosine_and_neg_clip_loss_and_filter_keeps_their_top(demo, scores, tmp_path):
    root, paths = demo
    frame = pl.read_parquet(scores / "00002.scores.parquet")
    with np.load(root / "emb" / "00002.emb.npz") as cached:
        u, v, scale = cached["image"].astype(np.float64), cached["text"].astype(np.float64), float(cached["scale"])
        assert frame["key"].to_list() == cached["keys"].tolist()
    u, v = u / np.linalg.norm(u, axis=1, keepdims=True), v / np.linalg.norm(v, axis=1, keepdims=True)
    cosine = u @ v.T
    assert np.allclose(frame["clip_score"], np.diag(cosine), atol=1e-5)
    # 20 samples: one random batch holds the shard, so negCLIPLoss is −τ · each pair's CLIP loss in it
    logits = scale * cosine
    clip_loss = (np.logaddexp.reduce(logits, axis=1) + np.logaddexp.reduce(logits, axis=0)) / 2 - np.diag(logits)
    assert np.allclose(frame["neg_clip_loss"], -clip_loss / scale, atol=1e-5)

    assert cli("filter", "--shards", paths.web, "--scores", scores, "--keep-fraction", 0.25, "--column", "clip_score",
               "--out", tmp_path / "f") == 0
    kept = pl.read_parquet(tmp_path / "f" / "manifest.parquet").filter(pl.col("decision") == "kept")
    everything = pl.read_parquet(list(scores.glob("*.scores.parquet")))
    top = top_fraction(everything, "clip_score", 0.25)  # what bootstrap's offline arm trains on
    assert kept.height == 30 and set(kept["key"]) == set(top["key"])
    assert top["clip_score"].min() >= everything.join(top, on=["shard", "key"], how="anti")["clip_score"].max()
    # --manifest kept: the same kept rows; the 90 drops counted per shard instead of recorded
    assert cli("filter", "--shards", paths.web, "--scores", scores, "--keep-fraction", 0.25, "--column", "clip_score",
               "--out", tmp_path / "k", "--manifest", "kept") == 0
    rows = pl.read_parquet(tmp_path / "k" / "manifest.parquet")
    assert set(rows["decision"]) == {"kept"} and set(rows["key"]) == set(kept["key"])
    counts = pl.read_parquet(tmp_path / "k" / "dropped.parquet")
    assert counts["rows"].sum() == 90 and counts["source_shard"].n_unique() == len(expand_shards(paths.web))


def test_filter_keep_fraction_on_two_ranks_equals_one_rank(demo, scores, tmp_path):
    root, paths = demo
    base = ["filter", "--shards", paths.web, "--scores", scores, "--keep-fraction", 0.3,
            "--column", "reference_loss", "--lower-is-better", "--samples-per-shard", 5]
    one_rank_equals_two(base, tmp_path)

    manifest = pl.read_parquet(tmp_path / "one" / "manifest.parquet")
    inputs = list(iter_samples(expand_shards(paths.web)))
    assert sorted(manifest["key"]) == sorted(s.key for s in inputs)  # every sample exactly once
    kept = manifest.filter(pl.col("decision") == "kept")
    assert kept.height == round(0.3 * 120)
    assert kept["reference_loss"].max() <= manifest.filter(pl.col("decision") == "dropped")["reference_loss"].min()
    sizes = pl.read_json(tmp_path / "one" / "sizes.json").row(0)
    assert sum(sizes) == kept.height
    written = {s.key: s.members for s in iter_samples(sorted(map(str, (tmp_path / "one").glob("*.tar"))))}
    originals = {s.key: s.members for s in inputs}
    assert written == {key: originals[key] for key in kept["key"]}  # byte for byte


SELECT = ["--filter-ratio", 0.5, "--super-batch", 8, "--n-chunks", 2, "--samples-per-shard", 7]


def test_select_keeps_b_of_every_full_super_batch_byte_for_byte_on_one_and_two_ranks(demo, tmp_path):
    root, paths = demo
    base = ["select", "--embeddings", root / "emb", "--shards", paths.web, *SELECT]
    one_rank_equals_two(base, tmp_path)

    manifest = pl.read_parquet(tmp_path / "one" / "manifest.parquet")
    inputs = list(iter_samples(expand_shards(paths.web)))
    assert sorted(manifest["key"]) == sorted(s.key for s in inputs)  # every sample exactly once
    per_batch = manifest.group_by("source_shard", "step").agg((pl.col("decision") == "kept").sum().alias("kept"),
                                                              pl.len().alias("rows"))
    # shards of 20 in super-batches of 8: two full ones keep b = 4 each, the last 4 keep 2 (whole chunks)
    assert sorted(per_batch["rows"]) == [4] * 6 + [8] * 12
    assert all(kept == {8: 4, 4: 2}[rows] for kept, rows in per_batch.select("kept", "rows").iter_rows())
    kept = manifest.filter(pl.col("decision") == "kept")
    assert sum(json.loads((tmp_path / "one" / "sizes.json").read_text()).values()) == kept.height == 60
    assert (tmp_path / "one" / "_SUCCESS").exists()
    written = {s.key: s.members for s in iter_samples(sorted(map(str, (tmp_path / "one").glob("*.tar"))))}
    originals = {s.key: s.members for s in inputs}
    assert written == {key: originals[key] for key in kept["key"]}  # byte for byte
    assert manifest["reference_loss"].null_count() == 0 and manifest["learner_loss"].null_count() == manifest.height

    # easy-reference JEST keeps pairs the reference finds easy: lower reference loss than what it drops
    dropped = manifest.filter(pl.col("decision") == "dropped")
    assert kept["reference_loss"].mean() < dropped["reference_loss"].mean()
    # another seed draws other super-batches and noise
    assert cli(*base, "--out", tmp_path / "seed1", "--seed", 1) == 0
    other = pl.read_parquet(tmp_path / "seed1" / "manifest.parquet").filter(pl.col("decision") == "kept")
    assert set(other["key"]) != set(kept["key"])


def test_select_with_a_fixed_learner_and_both_trainers_train_on_the_result(demo, tmp_path):
    from open_clip_train_run import train_one_epoch

    root, paths = demo
    out = tmp_path / "selected"
    assert cli("select", "--embeddings", root / "emb", "--shards", paths.web, "--learner", root / "learner",
               "--out", out, *SELECT) == 0
    assert json.loads((out / "job.json").read_text())["method"] == "learnability"  # the default with a learner
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert manifest["learnability"].null_count() == 0
    assert ((manifest["learner_loss"] - manifest["reference_loss"] - manifest["learnability"]).abs() < 1e-4).all()
    checkpoint = train_one_epoch(sorted(map(str, out.glob("*.tar"))), root / "learner", tmp_path / "logs")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["state_dict"].values())
    assert cli("train", "--shards", out / "*.tar", "--out", tmp_path / "train", "--steps", 3, "--batch-size", 8,
               "--eval", paths.eval, "--eval-every", 3, "--workers", 0) == 0
    assert json.loads((tmp_path / "train" / "metrics.json").read_text())["examples_seen"] == 24


def test_select_records_samples_without_embeddings_as_rejected_and_goes_on(demo, tmp_path):
    from jestfilter.embeddings import read_embeddings, write_embeddings

    root, paths = demo
    embeddings = tmp_path / "emb"
    shutil.copytree(root / "emb", embeddings)
    cached = read_embeddings(embeddings / "00001.emb.npz")  # as if two images had failed to decode there
    write_embeddings(embeddings / "00001.emb.npz", cached._replace(keys=cached.keys[2:], image=cached.image[2:],
                                                                     text=cached.text[2:]))
    assert cli("select", "--embeddings", embeddings, "--shards", paths.web, "--out", tmp_path / "s", *SELECT) == 0
    manifest = pl.read_parquet(tmp_path / "s" / "manifest.parquet")
    rejected = manifest.filter(pl.col("decision") == "rejected")
    assert sorted(rejected["key"]) == sorted(cached.keys[:2]) and set(rejected["reason"]) == {"missing_embedding"}
    assert manifest.height == 120 and manifest["key"].is_unique().all()
    # 18 usable samples in that shard: super-batches of 8, 8 and 2 keep 4, 4 and none (less than a chunk)
    assert manifest.filter(pl.col("decision") == "kept").height == 5 * 10 + 8


def test_killed_select_job_redoes_only_the_missing_shards(demo, tmp_path, capsys):
    root, paths = demo
    base = ["select", "--embeddings", root / "emb", "--shards", paths.web, "--learner", root / "learner", *SELECT]
    out = tmp_path / "killed"
    before = kill_after_first_shard(out, *base, "--out", out)
    assert cli(*base, "--out", out) == 0
    assert f"{6 - len(before)} done, {len(before)} skipped" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before
    assert not list(out.glob(".work-*"))  # a killed attempt's private folder is gone
    assert cli(*base, "--out", tmp_path / "whole") == 0
    for pattern in ("*.tar", "sizes.json", "manifest.parquet/*.parquet"):
        same_files(tmp_path / "whole", out, pattern)


def test_dedup_finds_the_duplicate_group_on_one_and_two_ranks(demo, scores, tmp_path):
    root, paths = demo
    truth = pl.read_parquet(paths.truth).with_columns(shard=pl.col("shard").str.strip_suffix(".tar"))
    group = truth.filter(pl.col("kind") == "duplicate").sort("shard", "key")
    first, repeats = group.row(0, named=True), group[1:].select("shard", "key")
    # eval set: the embed job's output for a web shard without copies, so its samples are eval look-alikes
    clean_shard = sorted(set(truth["shard"]) - set(group["shard"]))[0]
    (tmp_path / "eval").mkdir()
    shutil.copy(root / "emb" / f"{clean_shard}.emb.npz", tmp_path / "eval")
    base = ["dedup", "--embeddings", root / "emb", "--shards", paths.web, "--threshold", 0.9999]
    assert cli(*base, "--out", tmp_path / "one.parquet") == 0
    assert cli(*base, "--out", tmp_path / "two.parquet", "--rank", 0, "--world-size", 2) == 0
    assert not (tmp_path / "two.parquet").exists()
    assert cli(*base, "--out", tmp_path / "two.parquet", "--rank", 1, "--world-size", 2) == 0
    one = pl.read_parquet(tmp_path / "one.parquet")
    assert one.equals(pl.read_parquet(tmp_path / "two.parquet"))
    exact = one.filter(pl.col("reason") == "exact")
    assert exact.select("shard", "key").sort("shard", "key").equals(repeats)  # the first copy stays
    assert set(exact["matched_key"]) == {first["key"]}

    # from embeddings alone, the same copies are near duplicates of the first
    near = cli("dedup", "--embeddings", root / "emb", "--eval-embeddings", tmp_path / "eval", "--threshold", 0.9999,
               "--out", tmp_path / "near.parquet")
    assert near == 0
    near = pl.read_parquet(tmp_path / "near.parquet")
    copies = near.join(repeats, on=["shard", "key"])
    assert copies.height == repeats.height
    assert set(copies["reason"]) == {"near"} and set(copies["matched_key"]) == {first["key"]}
    contaminated = near.filter(pl.col("reason") == "eval")
    assert set(contaminated["key"]) == set(truth.filter(pl.col("shard") == clean_shard)["key"])
    assert (contaminated["similarity"] > 0.9999).all()

    # filter --remove drops every listed sample, whatever its score
    out = tmp_path / "filtered"
    assert cli("filter", "--shards", paths.web, "--scores", scores,
               "--out", out, "--threshold", 0, "--column", "reference_loss", "--remove", tmp_path / "one.parquet") == 0
    manifest = pl.read_parquet(out / "manifest.parquet")
    removed = manifest.filter(pl.col("reason").is_not_null())
    assert removed.height == one.height and set(removed["decision"]) == {"dropped"}
    assert manifest.filter(pl.col("decision") == "kept").height == 120 - one.height


def test_failures_are_retried_recorded_and_redone(demo, tmp_path, capsys):
    root, paths = demo
    embeddings = tmp_path / "emb"
    shutil.copytree(root / "emb", embeddings)
    (embeddings / "00003.emb.npz").unlink()
    args = ["score", "--embeddings", embeddings, "--shards", paths.web, "--out", tmp_path / "scores", "--retries", 1]
    assert cli(*args) == 1
    assert "5 done, 0 skipped (already done), 1 failed" in capsys.readouterr().out
    failures = read_failures(tmp_path / "scores")
    assert failures["attempt"].to_list() == [1, 2] and failures["final"].to_list() == [False, True]
    assert set(failures["shard"]) == {expand_shards(paths.web)[3]} and "FileNotFoundError" in failures["error"][0]
    shutil.copy(root / "emb" / "00003.emb.npz", embeddings)
    assert cli(*args) == 0
    assert "1 done, 5 skipped" in capsys.readouterr().out
    assert read_failures(tmp_path / "scores").is_empty()

    attempts = []

    def flaky(shard: str) -> int:  # fails once, as a full disk or a network blip would
        attempts.append(shard)
        if attempts.count(shard) == 1 and shard.endswith("b"):
            raise OSError("temporary failure")
        return 7

    summary = run_shards("flaky", ["a", "b", "c"], flaky, tmp_path / "flaky", resolve_placement(0, 1, {}), retries=2)
    assert summary.exit_status == 0 and summary.samples == 21 and attempts == ["a", "b", "b", "c"]
    assert read_done(tmp_path / "flaky", "b")["attempt"] == 2
    assert read_failures(tmp_path / "flaky")["final"].to_list() == [False]
    assert done_path(tmp_path / "flaky", "c").exists()


@pytest.mark.parametrize("args", [
    ["filter", "--shards", "{web}", "--scores", "{scores}", "--out", "{tmp}/f"],
    ["filter", "--shards", "{web}", "--scores", "{scores}", "--out", "{tmp}/f", "--keep-fraction", "1.5"],
    ["filter", "--shards", "{web}", "--scores", "{scores}", "--out", "{tmp}/f", "--threshold", "1", "--column", "x"],
    ["filter", "--shards", "{web}", "--scores", "{scores}", "--out", "{tmp}/f", "--threshold", "1"],  # no learner
    ["filter", "--shards", "{web}", "--scores", "{scores}", "--out", "{tmp}/f", "--threshold", "nan",
     "--column", "reference_loss"],  # would keep nothing
    ["embed", "--model", "{root}/reference", "--shards", "{tmp}/none-*.tar", "--out", "{tmp}/e"],
    ["embed", "--model", "{root}/reference", "--shards", "{web}", "--out", "{tmp}/e", "--rank", "2",
     "--world-size", "2"],
    ["embed", "--model", "{root}/reference", "--shards", "{web}", "--out", "{tmp}/e", "--rank", "0"],
    ["score", "--embeddings", "{root}/emb", "--learner", "{root}/learner", "--out", "{tmp}/s"],
    ["score", "--embeddings", "{tmp}/missing", "--out", "{tmp}/s"],
    ["dedup", "--embeddings", "{root}/emb", "--out", "{tmp}/d.csv"],
    ["dedup", "--embeddings", "{root}/emb", "--out", "{tmp}/d.parquet", "--threshold", "2"],
    ["select", "--embeddings", "{root}/emb", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "0.8",
     "--method", "clip_score"],  # a per-example score of the pool: score + filter
    ["select", "--embeddings", "{root}/emb", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "0.8",
     "--method", "learnability"],  # no --learner
    ["select", "--embeddings", "{root}/emb", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "0.8",
     "--learner", "{root}/learner", "--method", "easy_reference"],
    ["select", "--embeddings", "{root}/emb", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "0.8",
     "--super-batch", "100"],  # b = 20 does not split into 16 chunks
    ["select", "--embeddings", "{tmp}/missing", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "0.8"],
    ["select", "--embeddings", "{root}/emb", "--shards", "{web}", "--out", "{tmp}/s", "--filter-ratio", "1"],
])
def test_bad_arguments_exit_2_with_one_line(demo, scores, tmp_path, capsys, args):
    root, paths = demo
    args = [a.format(web=paths.web, scores=scores, tmp=tmp_path, root=root) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"jestfilter {args[0]}: error:") and "\n" not in err, err


def test_a_folder_made_with_other_settings_is_refused(demo, scores, tmp_path, capsys):
    root, paths = demo
    base = ["filter", "--shards", paths.web, "--scores", scores, "--out", tmp_path / "f", "--column", "reference_loss"]
    assert cli(*base, "--keep-fraction", 0.5) == 0
    assert cli(*base, "--keep-fraction", 0.6) == 2
    assert "other settings" in capsys.readouterr().err


def test_embed_counts_an_absent_or_unreadable_shard_as_a_failure_never_done(demo, tmp_path, capsys):
    root, paths = demo
    out = tmp_path / "emb"
    shutil.copytree(root / "emb", out)  # the six shards are done
    web = Path(paths.web).parent
    (web.parent / "garbage").mkdir(exist_ok=True)
    (web.parent / "garbage" / "00007.tar").write_bytes(os.urandom(2000))
    shards = [str(web / "{00000..00006}.tar"), str(web.parent / "garbage" / "00007.tar")]  # 00006 is absent
    args = ["embed", "--model", root / "reference", "--shards", *shards, "--out", out, "--retries", 1]
    assert cli(*args) == 1
    assert "0 done, 6 skipped (already done), 2 failed" in capsys.readouterr().out
    failures = read_failures(out)
    assert failures.height == 4 and failures["final"].sum() == 2
    assert {e.split(": ")[-1] for e in failures["error"]} == {"missing_shard", "unreadable_shard"}
    assert not done_path(out, "00006.tar").exists() and not (out / "00006.emb.npz").exists()
    assert cli(*args) == 1  # tried again, never skipped as done
    assert "2 failed" in capsys.readouterr().out


def test_a_cache_made_from_another_shard_of_the_same_name_is_never_used(demo, tmp_path):
    from conftest import write_web_shards
    from jestfilter.embeddings import build_cache, embed_shard, read_embeddings

    root, _ = demo
    first = write_web_shards(tmp_path / "ingest-1", n_shards=1)  # both web-000000.tar, keys 000000000...
    second = write_web_shards(tmp_path / "ingest-2", n_shards=1, start=20)  # other pictures, the same keys
    shards = [str(first.paths[0]), str(second.paths[0])]
    samples = {shard: [s for s in iter_samples([shard]) if isinstance(s, RawSample)] for shard in shards}
    assert [s.key for s in samples[shards[0]]] == [s.key for s in samples[shards[1]]]
    bundle = create_model(f"local-dir:{root / 'reference'}")

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    embed_shard(bundle, shards[0], cache_dir / "web-000000.emb.npz")
    with pytest.raises(ValueError, match="was made from .*ingest-1.* not from .*ingest-2"):
        EmbeddingCache(cache_dir).lookup(samples[shards[1]])

    cache = build_cache(bundle, shards, cache_dir, progress=False)  # one file per shard, both kept
    assert len(list(cache_dir.glob("web-000000-*.emb.npz"))) == 2
    for shard in shards:
        own = tmp_path / f"own-{Path(shard).parent.name}.emb.npz"
        embed_shard(bundle, shard, own)
        looked_up = cache.lookup(samples[shard])
        assert torch.equal(looked_up.image, torch.from_numpy(read_embeddings(own).image.astype(np.float32)))


def test_a_shard_replaced_after_it_was_done_is_done_again(demo, tmp_path, capsys):
    from jestfilter.embeddings import read_embeddings

    root, paths = demo
    web = Path(shutil.copytree(Path(expand_shards(paths.web)[0]).parent, tmp_path / "web"))
    shards, out = str(web / "*.tar"), tmp_path / "emb"
    assert cli("embed", "--model", root / "reference", "--shards", shards, "--out", out) == 0
    replaced = web / "00001.tar"
    shutil.copyfile(web / "00002.tar", replaced)  # another download under the same name
    capsys.readouterr()
    assert cli("embed", "--model", root / "reference", "--shards", shards, "--out", out) == 0
    assert "1 done, 5 skipped" in capsys.readouterr().out
    assert read_embeddings(out / "00001.emb.npz").made_from(str(replaced))
    assert cli("embed", "--model", root / "reference", "--shards", shards, "--out", out) == 0
    assert "0 done, 6 skipped" in capsys.readouterr().out
    # filter redoes it too, and the shard's old output goes
    scores = tmp_path / "scores"
    assert cli("score", "--embeddings", out, "--out", scores) == 0
    base = ["filter", "--shards", shards, "--scores", scores, "--out", tmp_path / "f", "--keep-fraction", "1",
            "--column", "reference_loss", "--samples-per-shard", "7"]
    assert cli(*base) == 0
    (web / "00003.tar").write_bytes(b"")  # now empty: no output shard at all
    assert cli("score", "--embeddings", out, "--out", scores) == 0 and cli(*base) == 0
    assert not list((tmp_path / "f").glob("00003-*.tar"))
    assert set(json.loads((tmp_path / "f" / "sizes.json").read_text())) == {
        p.name for p in (tmp_path / "f").glob("*.tar")}
