"""Behaviour pin: a short seeded bootstrap selects the same keys and writes byte-identical
filtered shards and the same manifest rows as the recorded run (see behaviour_pin.py)."""

from __future__ import annotations

import json

import numpy as np

from behaviour_pin import GOLDEN, run_pinned

SCORE_TOLERANCE = 5e-3  # nats; scalar kernels (ATEN_CPU_CAPABILITY=default) move them by up to 6e-4


def test_bootstrap_selects_and_writes_what_the_recorded_run_did(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    found = run_pinned(tmp_path)
    for name in ("kept_rows", "kept_keys", "manifest_rows", "manifest", "sizes", "shards"):
        assert found[name] == expected[name], name
    assert found["manifest_scores"].keys() == expected["manifest_scores"].keys()
    for name, values in expected["manifest_scores"].items():
        got = found["manifest_scores"][name]
        assert [v is None for v in got] == [v is None for v in values], f"{name}: missing scores moved"
        pairs = np.array([(a, b) for a, b in zip(got, values) if b is not None], dtype=float).reshape(-1, 2)
        assert np.abs(pairs[:, 0] - pairs[:, 1]).max(initial=0.0) <= SCORE_TOLERANCE, name
