"""A filtering run killed with SIGKILL and restarted ends exactly as an uninterrupted run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from jestfilter.data import read_manifest

JOB = Path(__file__).with_name("filter_job.py")
ROOT = Path(__file__).resolve().parents[1]


def start(pattern, out, delay):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(JOB), pattern, str(out), "--delay", str(delay)],
                            stdout=subprocess.PIPE, text=True, env=env)


def run_and_kill_after(pattern, out, steps_seen):
    """Start the job, wait until it has printed ``steps_seen`` more steps, then kill -9."""
    job = start(pattern, out, delay=0.05)
    for _ in range(steps_seen):
        line = job.stdout.readline()
        assert line.startswith("step"), line
    job.send_signal(signal.SIGKILL)
    job.wait()
    return job.returncode


def output_files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.name.endswith(".tar") or p.name in ("sizes.json", "_SUCCESS")}


def test_killed_and_restarted_run_keeps_the_same_samples_without_duplicates(web_shards, tmp_path):
    whole = tmp_path / "whole"
    assert start(web_shards.pattern, whole, delay=0).communicate()[0].endswith("done\n")

    resumed = tmp_path / "resumed"
    assert run_and_kill_after(web_shards.pattern, resumed, 3) == -signal.SIGKILL
    assert run_and_kill_after(web_shards.pattern, resumed, 7) == -signal.SIGKILL  # in the second pass
    assert start(web_shards.pattern, resumed, delay=0).communicate()[0].endswith("done\n")

    assert output_files(resumed) == output_files(whole)
    order = ["pass", "step", "decision", "key"]
    rows, expected = read_manifest(resumed).sort(order), read_manifest(whole).sort(order)
    assert rows.equals(expected)
    assert rows.height == 2 * len(web_shards.samples)  # one row per sample per pass, no gap, no repeat
    kept = rows.filter(rows["decision"] == "kept")
    assert kept.filter(kept["pass"] == 0)["key"].is_unique().all()
    written = sum(int(n) for n in __import__("json").loads((resumed / "sizes.json").read_text()).values())
    assert written == kept["key"].n_unique()  # each kept sample written once across both passes
