"""The manifest: one row per input sample per pass, in parquet parts that polars, pandas and
duckdb all read."""

import duckdb
import pandas as pd
import polars as pl
import pytest
import torch

from jestfilter.data import Manifest, SuperBatchLoader, read_manifest
from jestfilter.selection.criteria import SCORE_COLUMNS


def fill(manifest, batches, first_step=0):
    for step, batch in enumerate(batches, start=first_step):
        n = len(batch.samples)
        kept = list(range(0, n, 2))
        loss = torch.arange(n, dtype=torch.float32)
        manifest.record(batch, step=step, kept=kept, output_shards=[f"out-{step}.tar"] * len(kept),
                        learner_loss=loss, reference_loss=loss / 2, learnability=loss / 2)


@pytest.fixture(scope="module")
def batches(damaged_shards, tokenizer):
    return list(SuperBatchLoader(damaged_shards.pattern, 4, tokenizer, passes=2))


def test_every_input_sample_gets_one_row_per_pass_with_its_decision(batches, damaged_shards, tmp_path):
    manifest = Manifest(tmp_path, rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(manifest, batches)
    manifest.close()
    rows = read_manifest(tmp_path)
    assert len(list((tmp_path / "manifest.parquet").glob("part-*.parquet"))) > 3  # written as it goes
    per_pass = len(damaged_shards.good) + len(damaged_shards.expected)
    assert rows.height == 2 * per_pass
    assert rows.group_by("pass").len().sort("pass")["len"].to_list() == [per_pass, per_pass]
    rejected = rows.filter(pl.col("decision") == "rejected", pl.col("pass") == 0)
    assert dict(zip(zip(rejected["source_shard"].map_elements(lambda s: s.rsplit("/", 1)[-1], return_dtype=pl.String),
                        rejected["key"]), rejected["reason"])) == damaged_shards.expected
    kept = rows.filter(pl.col("decision") == "kept")
    assert kept["output_shard"].null_count() == 0 and kept["learner_loss"].null_count() == 0
    dropped = rows.filter(pl.col("decision") == "dropped")
    assert dropped.height + kept.height == 2 * len(damaged_shards.good)
    assert dropped["output_shard"].null_count() == dropped.height
    assert rows.filter(pl.col("decision") != "rejected")["reason"].null_count() == 2 * len(damaged_shards.good)


def test_polars_pandas_and_duckdb_read_the_same_rows(batches, tmp_path):
    manifest = Manifest(tmp_path, rows_per_part=7, score_columns=SCORE_COLUMNS)
    fill(manifest, batches)
    manifest.close()
    path = tmp_path / "manifest.parquet"
    with_polars = pl.read_parquet(path / "*.parquet").sort("pass", "step", "key")
    with_pandas = pd.read_parquet(path).sort_values(["pass", "step", "key"], ignore_index=True)
    with_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{path}/*.parquet') ORDER BY pass, step, key").df()
    assert with_polars.height == len(with_pandas) == len(with_duckdb) > 0
    assert with_polars["key"].to_list() == with_pandas["key"].tolist() == with_duckdb["key"].tolist()
    counts = duckdb.sql(f"SELECT decision, count(*) AS n FROM read_parquet('{path}/*.parquet') GROUP BY decision").df()
    assert dict(zip(counts["decision"], counts["n"])) == dict(with_polars["decision"].value_counts().iter_rows())


def test_resuming_drops_rows_written_after_the_checkpoint(batches, tmp_path):
    whole = Manifest(tmp_path / "whole", rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(whole, batches)
    whole.close()

    crashed = Manifest(tmp_path / "resumed", rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(crashed, batches[:3])
    state = crashed.state_dict()
    fill(crashed, batches[3:6], first_step=3)  # written after the checkpoint: must go
    resumed = Manifest(tmp_path / "resumed", rows_per_part=5, score_columns=SCORE_COLUMNS)
    resumed.load_state_dict(state)
    fill(resumed, batches[3:], first_step=3)
    resumed.close()
    key = ["pass", "step", "decision", "key"]
    assert read_manifest(tmp_path / "resumed").sort(key).equals(read_manifest(tmp_path / "whole").sort(key))


def test_a_fresh_manifest_refuses_a_folder_holding_one(batches, tmp_path):
    manifest = Manifest(tmp_path, score_columns=SCORE_COLUMNS)
    fill(manifest, batches[:1])
    manifest.close()
    again = Manifest(tmp_path, score_columns=SCORE_COLUMNS)
    fill(again, batches[:1])
    with pytest.raises(ValueError, match="already holds a manifest"):
        again.close()


def test_scores_must_match_the_super_batch(batches, tmp_path):
    with pytest.raises(ValueError, match="expected"):
        Manifest(tmp_path, score_columns=SCORE_COLUMNS).record(batches[0], step=0, kept=[0], learner_loss=[1.0])


def test_a_part_being_written_never_sits_in_the_folder_readers_scan(batches, tmp_path, monkeypatch):
    folder, seen = tmp_path / "manifest.parquet", []
    write = pl.DataFrame.write_parquet

    def write_and_look(frame, file, *args, **kwargs):  # a reader scanning the folder mid-write
        write(frame, file, *args, **kwargs)
        seen.append(sorted(p.name for p in folder.iterdir()))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_and_look)
    manifest = Manifest(tmp_path, rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(manifest, batches)
    manifest.close()
    assert len(seen) == manifest.parts > 1
    assert all(name.startswith("part-") and name.endswith(".parquet") for names in seen for name in names)


def test_a_kept_manifest_records_kept_and_rejected_rows_and_counts_the_drops_per_shard(batches, tmp_path):
    from jestfilter.data.manifest import scan_dropped_counts, scan_manifest
    from jestfilter.results import manifest_counts

    full = Manifest(tmp_path / "all", rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(full, batches)
    full.close()
    kept = Manifest(tmp_path / "kept", rows_per_part=5, score_columns=SCORE_COLUMNS, keep_dropped=False)
    fill(kept, batches)
    kept.close()
    everything, recorded = read_manifest(tmp_path / "all"), read_manifest(tmp_path / "kept")
    assert set(recorded["decision"]) == {"kept", "rejected"}
    key = ["pass", "step", "decision", "source_shard", "key"]
    assert recorded.sort(key).equals(everything.filter(pl.col("decision") != "dropped").sort(key))
    counts = pl.read_parquet(tmp_path / "kept" / "dropped.parquet" / "*.parquet")
    expected = everything.filter(pl.col("decision") == "dropped").group_by("source_shard", "pass").len()
    assert dict(counts.group_by("source_shard", "pass").agg(pl.col("rows").sum()).rows_by_key(
        ["source_shard", "pass"], unique=True)) == dict(expected.rows_by_key(["source_shard", "pass"], unique=True))
    # the run's counts are the same whichever way it was recorded
    assert (manifest_counts(scan_manifest(tmp_path / "kept"), scan_dropped_counts(tmp_path / "kept"))
            == {**manifest_counts(scan_manifest(tmp_path / "all")),
                "dropped_counted_not_recorded": expected["len"].sum()})
    assert scan_dropped_counts(tmp_path / "all") is None


def test_a_kept_manifest_resumes_without_counting_a_drop_twice(batches, tmp_path):
    whole = Manifest(tmp_path / "whole", rows_per_part=5, score_columns=SCORE_COLUMNS, keep_dropped=False)
    fill(whole, batches)
    whole.close()
    crashed = Manifest(tmp_path / "resumed", rows_per_part=5, score_columns=SCORE_COLUMNS, keep_dropped=False)
    fill(crashed, batches[:3])
    state = crashed.state_dict()
    fill(crashed, batches[3:6], first_step=3)  # counted after the checkpoint: must go
    crashed.flush()
    resumed = Manifest(tmp_path / "resumed", rows_per_part=5, score_columns=SCORE_COLUMNS, keep_dropped=False)
    resumed.load_state_dict(state)
    fill(resumed, batches[3:], first_step=3)
    resumed.close()

    def drops(folder):
        return pl.read_parquet(folder / "dropped.parquet" / "*.parquet").group_by("source_shard", "pass").agg(
            pl.col("rows").sum()).sort("source_shard", "pass")

    assert drops(tmp_path / "resumed").equals(drops(tmp_path / "whole"))
    key = ["pass", "step", "decision", "key"]
    assert read_manifest(tmp_path / "resumed").sort(key).equals(read_manifest(tmp_path / "whole").sort(key))


def test_the_report_reads_a_manifest_larger_than_it_holds_lazily(batches, tmp_path):
    from jestfilter.data.manifest import scan_manifest
    from jestfilter.report.plots import score_histograms
    from jestfilter.results import manifest_counts

    manifest = Manifest(tmp_path, rows_per_part=5, score_columns=SCORE_COLUMNS)
    fill(manifest, batches)
    manifest.close()
    eager, lazy = read_manifest(tmp_path), scan_manifest(tmp_path)
    counts = manifest_counts(lazy)
    assert counts["decisions"] == dict(eager["decision"].value_counts().iter_rows())
    assert counts["unique_kept"] == eager.filter(pl.col("decision") == "kept").select("source_shard", "key").n_unique()
    histograms = score_histograms(lazy)
    assert histograms["columns"] == ["learnability", "learner_loss", "reference_loss"]
    table = histograms["tables"]["learner_loss"]
    last = eager["step"].max()
    early = eager.filter(pl.col("decision") != "rejected", pl.col("step") < 0.2 * (last + 1))
    assert table.filter(pl.col("phase") == "early")["count"].sum() == early.height  # every early sample-pass, binned
