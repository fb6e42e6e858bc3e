"""Which samples `filtered/` holds after many passes: the pool table and the `top` rule, on
manifest rows as the sink writes them."""

from __future__ import annotations

import polars as pl
import pytest

from jestfilter.data.manifest import SCHEMA
from jestfilter.selection.criteria import CRITERIA, SCORE_COLUMNS
from jestfilter.sinks.pool import choose_top, pool_table


def rows(*entries) -> pl.LazyFrame:
    """(key, pass, decision, reason, learner_loss, reference_loss) → manifest rows of shard s.tar."""
    schema = {**SCHEMA, **{name: pl.Float32 for name in SCORE_COLUMNS}}
    data = [{"key": key, "source_shard": "s.tar", "pass": p, "step": p, "decision": decision, "reason": reason,
             "learner_loss": learner, "reference_loss": reference,
             "learnability": None if learner is None else learner - reference}
            for key, p, decision, reason, learner, reference in entries]
    return pl.DataFrame(data, schema=schema).lazy()


MANIFEST = rows(
    ("a", 0, "kept", None, 5.0, 1.0), ("a", 1, "dropped", None, 3.0, 1.0),  # learnability 4, 2
    ("b", 0, "dropped", None, 4.0, 1.0), ("b", 1, "dropped", "short_super_batch", None, None),  # 3, unscored
    ("c", 0, "kept", None, 2.0, 1.0), ("c", 1, "kept", None, 2.0, 1.0),  # 1, 1: chosen in every pass
    ("d", 0, "rejected", "corrupt_image", None, None),  # not in the pool
)


def test_pool_counts_passes_and_choices_and_averages_only_the_passes_that_scored():
    pool = {row["key"]: row for row in pool_table(MANIFEST, CRITERIA["learnability"]).iter_rows(named=True)}
    assert set(pool) == {"a", "b", "c"}
    assert (pool["a"]["passes"], pool["a"]["chosen"], pool["a"]["score"]) == (2, 1, 3.0)
    assert (pool["b"]["passes"], pool["b"]["chosen"], pool["b"]["score"]) == (2, 0, 3.0)  # the unscored pass is no 0
    assert pool["c"]["chosen_share"] == 1.0 and pool["c"]["score"] == 1.0


@pytest.mark.parametrize("method, expected", [("learnability", {"a", "b"}), ("easy_reference", {"c", "a"})])
def test_top_keeps_the_best_mean_score_of_the_criterion_then_the_most_often_chosen(method, expected):
    top = choose_top(pool_table(MANIFEST, CRITERIA[method]), keep_fraction=0.67, seed=0)
    # easy_reference: all three score −1; c is chosen in every pass, a in half, b never
    assert set(top["key"]) == expected


def test_a_kept_only_manifest_gives_a_pool_table_of_the_chosen_samples_with_unknown_passes():
    kept_rows = MANIFEST.filter(pl.col("decision") != "dropped")  # what --manifest kept records
    pool = {row["key"]: row for row in pool_table(kept_rows, CRITERIA["learnability"], every_pass=False)
            .iter_rows(named=True)}
    assert set(pool) == {"a", "c"}  # b was never chosen: counted as a drop, not listed
    assert pool["c"]["chosen"] == 2 and pool["c"]["passes"] is None and pool["c"]["chosen_share"] is None
    assert pool["a"]["score"] == 4.0  # its mean score over the passes that chose it


def test_the_top_rule_refuses_a_manifest_without_the_dropped_rows(tmp_path):
    from jestfilter.config import BootstrapConfig
    from jestfilter.sinks import FilteredOutput

    with pytest.raises(ValueError, match="needs --manifest all"):
        FilteredOutput(tmp_path / "f", rule="top", keep_fraction=0.2, manifest="kept")
    with pytest.raises(ValueError, match="needs --manifest all"):
        BootstrapConfig(filtered_rule="top", manifest="kept").validate()


def test_the_pool_table_is_the_same_read_in_one_go_or_a_few_rows_at_a_time(monkeypatch):
    import numpy as np

    from jestfilter.data import manifest as manifest_module

    rng = np.random.default_rng(0)
    entries = [(f"k{rng.integers(40)}", p, str(rng.choice(["kept", "dropped", "rejected"], p=[0.3, 0.65, 0.05])),
                None, float(rng.normal(3)), float(rng.normal(2))) for p in range(6) for _ in range(50)]
    manifest = rows(*entries)
    whole = pool_table(manifest, CRITERIA["learnability"])
    monkeypatch.setattr(manifest_module, "CHUNK_ROWS", 7)  # 43 chunks, spilled to disk in 43 buckets
    chunked = pool_table(manifest, CRITERIA["learnability"])
    assert chunked.height == whole.height == 40
    assert chunked.drop("score").equals(whole.drop("score"))
    assert np.allclose(chunked["score"].to_numpy(), whole["score"].to_numpy())  # summed in another order
    assert choose_top(chunked, 0.3, seed=1).equals(choose_top(whole, 0.3, seed=1))
