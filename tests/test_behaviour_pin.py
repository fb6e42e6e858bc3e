"""Behaviour pin: a short seeded bootstrap selects the same keys and writes byte-identical
filtered shards and the same manifest rows as the recorded run (see behaviour_pin.py)."""

from __future__ import annotations

import json

from behaviour_pin import GOLDEN, run_pinned


def test_bootstrap_selects_and_writes_what_the_recorded_run_did(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    found = run_pinned(tmp_path)
    for name in ("kept_rows", "kept_keys", "manifest_rows", "manifest", "sizes", "shards"):
        assert found[name] == expected[name], name
