"""The report's numbers: noise-kind shares and the extremes grid's bookkeeping."""

import polars as pl
import pytest

from jestfilter.report import kept_by_kind
from jestfilter.sinks import Example, ExtremesTracker


def test_kept_by_kind_compares_web_share_with_training_share():
    truth = pl.DataFrame({"key": ["a", "b", "c", "d"], "kind": ["clean", "clean", "junk_image", "mismatched"]})
    manifest = pl.DataFrame({
        "key": ["a", "a", "b", "c", "d", "c"],
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
