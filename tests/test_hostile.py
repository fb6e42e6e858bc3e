"""The hostile shards (tests/hostile_shards.py) through inspect, embed + score + filter and
bootstrap: nothing hangs or crashes, and every readable sample is accounted exactly once, with
its reason, in what each command reports."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from jestfilter.cli import main
from jestfilter.data import RawSample, iter_samples
from jestfilter.datasets.demo import build_demo_data
from jestfilter.jobs.runner import read_failures
from jestfilter.models import create_model, save_local_dir

DECODE_REASONS = ("image_too_large", "corrupt_image")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference") / "model"
    torch.manual_seed(0)
    save_local_dir(create_model("jest-tiny"), folder)
    return folder


@pytest.fixture(scope="module")
def scored(hostile, reference, tmp_path_factory):
    """embed (the unreadable shards fail) and score the hostile shards."""
    root = tmp_path_factory.mktemp("jobs")
    exit_status = main(["embed", "--model", str(reference), "--shards", hostile.pattern, "--out", str(root / "emb"),
                        "--retries", "0"])
    assert main(["score", "--embeddings", str(root / "emb"), "--out", str(root / "scores")]) == 0
    return root, exit_status


def expected(hostile, decoded: bool = True, shards: bool = True, decode_reason: str | None = None) -> Counter:
    """(shard, key, reason) of every record; ``decoded``: images decoded (else their damage goes
    unseen, or is ``decode_reason``); ``shards``: with the shard-level records (key "")."""
    rows = Counter()
    for shard, key, reason in hostile.records:
        if reason in DECODE_REASONS and not decoded:
            reason = decode_reason
        if key or shards:
            rows[(shard, key, reason)] += 1
    return rows


def manifest_records(folder: Path, pass_index: int | None = None) -> Counter:
    manifest = pl.read_parquet(folder / "manifest.parquet")
    if pass_index is not None:
        manifest = manifest.filter(pl.col("pass") == pass_index)
    return Counter((Path(row["source_shard"]).name, row["key"], row["reason"] if row["decision"] == "rejected" else None)
                   for row in manifest.iter_rows(named=True))


def test_inspect_counts_every_sample_and_every_kind_of_damage(hostile, capsys):
    assert main(["inspect", "--decode", hostile.pattern]) == 0
    out = capsys.readouterr().out
    records = expected(hostile)
    damaged = Counter(reason for (_, _, reason), n in records.items() for _ in range(n) if reason)
    good = sum(n for (_, _, reason), n in records.items() if reason is None)
    assert f"14 shards, {good} samples, {sum(damaged.values())} rejected" in out
    listed = dict(re.findall(r"^  (\w+): (\d+)$", out, flags=re.M))
    assert {reason: int(n) for reason, n in listed.items()} == dict(damaged)


def test_embed_fails_the_unreadable_shards_and_embeds_every_decodable_sample_once(hostile, scored):
    root, exit_status = scored
    assert exit_status == 1
    failed = {Path(shard).name for shard in read_failures(root / "emb")["shard"]}
    assert failed == set(hostile.unreadable)
    embedded = Counter()
    for path in (root / "emb").glob("*.emb.npz"):
        with np.load(path) as data:
            embedded.update((path.name.replace(".emb.npz", ".tar"), key) for key in data["keys"].tolist())
    assert embedded == Counter((shard, key) for shard, key in hostile.good())


def test_filter_accounts_every_readable_sample_once_and_writes_the_kept_ones_byte_for_byte(hostile, scored, tmp_path):
    root, _ = scored
    out = tmp_path / "filtered"
    assert main(["filter", "--shards", hostile.pattern, "--scores", str(root / "scores"), "--out", str(out),
                 "--keep-fraction", "0.5", "--column", "reference_loss", "--lower-is-better", "--retries", "0"]) == 1
    assert {Path(s).name for s in read_failures(out)["shard"]} == set(hostile.unreadable)  # never "done"
    want = expected(hostile, decoded=False, decode_reason="missing_score")  # no score: it did not decode
    want = Counter({r: n for r, n in want.items() if r[0] not in hostile.unreadable})
    assert manifest_records(out) == want
    manifest = pl.read_parquet(out / "manifest.parquet").filter(pl.col("decision") == "kept")
    originals = {(Path(s.source_shard).name, s.key): s.members for s in iter_samples(
        sorted(str(p) for p in hostile.folder.glob("hostile-*.tar") if p.name not in hostile.unreadable))
        if isinstance(s, RawSample)}
    written = {}
    for row in manifest.iter_rows(named=True):
        [sample] = [s for s in iter_samples([str(out / row["output_shard"])]) if s.key == row["key"]
                    and s.members == originals[(Path(row["source_shard"]).name, row["key"])]]
        written[(Path(row["source_shard"]).name, row["key"])] = sample.members
    assert len(written) == manifest.height == round(0.5 * sum(1 for r in want.elements() if r[2] is None))


def test_bootstrap_accounts_every_readable_sample_once_and_scores_it_with_its_own_embeddings(
        hostile, reference, scored, tmp_path):
    demo = build_demo_data(tmp_path / "demo", curated=20, web=20, eval=40, samples_per_shard=20, progress=False)
    out = tmp_path / "run"
    assert main(["bootstrap", "--curated", demo.curated, "--web", hostile.pattern, "--eval", str(demo.eval),
                 "--out", str(out), "--reference", f"local-dir:{reference}", "--steps", "4", "--batch-size", "8",
                 "--filter-ratio", "0.5", "--n-chunks", "4", "--eval-every", "4", "--checkpoint-every", "2",
                 "--workers", "0", "--compare", "none", "--no-progress"]) == 0
    assert manifest_records(out / "filtered", pass_index=0) == expected(hostile)
    # the same key in two downloads: each scored with its own embeddings, as the score job scores it
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet").filter(pl.col("decision") != "rejected")
    scores = pl.read_parquet(scored[0] / "scores" / "*.scores.parquet")
    joined = manifest.with_columns(shard=pl.col("source_shard").str.split("/").list.last().str.strip_suffix(".tar")) \
        .join(scores, on=["shard", "key"], suffix="_job")
    assert joined.height == manifest.height
    assert (joined["reference_loss"] - joined["reference_loss_job"]).abs().max() < 1e-3
    namesakes = joined.filter(pl.col("shard").is_in(["hostile-000001", "hostile-000002"]) & (pl.col("pass") == 0))
    both = namesakes.group_by("key").agg(pl.len(), pl.col("reference_loss").n_unique().alias("losses"))
    assert both.filter(pl.col("key") != "dupkey").select((pl.col("len") == 2) & (pl.col("losses") == 2)).to_series().all()
