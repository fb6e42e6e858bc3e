"""One run per output folder: a second bootstrap on the same --out is refused with the holder's
name; stale locks (a dead process, a silent host) are taken over; batch jobs lock per shard."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from jestfilter.cli import main
from jestfilter.data.lock import RUN_LOCK, FolderLock, LockHeld
from jestfilter.datasets.demo import build_demo_data

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--precision", "fp32", "--steps", "8", "--reference-steps", "4", "--batch-size", "16", "--n-chunks", "4", "--eval-every", "8",
        "--checkpoint-every", "4", "--samples-per-shard", "50", "--workers", "0", "--compare", "none",
        "--no-progress"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"), curated=100, web=300, eval=60, samples_per_shard=50,
                           progress=False)


def python(code: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)


def hold(path: Path) -> subprocess.Popen:
    """A live process holding the lock at ``path`` until its stdin closes."""
    holder = python(f"""
        import sys
        from jestfilter.data.lock import FolderLock
        with FolderLock({str(path)!r}):
            print("held", flush=True)
            sys.stdin.read()
        """, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == "held\n"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.stdin.close()
    assert holder.wait(60) == 0


def test_a_second_bootstrap_on_the_same_folder_is_refused_and_the_first_finishes_whole(demo, tmp_path, capsys):
    import jestfilter.pipeline  # noqa: F401  (imported before the first run starts, so the second is quick)

    out = tmp_path / "run"
    args = ["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(demo.eval), "--out", str(out),
            *TINY, "--steps", "40", "--filtered-rule", "all"]  # filtered/: every sample kept in any pass
    first = subprocess.Popen([sys.executable, "-m", "jestfilter", *args], cwd=ROOT, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    while not (out / "checkpoints").exists() and first.poll() is None:
        time.sleep(0.05)
    assert main([*args, "--seed", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{out} is in use by pid {first.pid} on {socket.gethostname()}" in error and "\n" not in error
    assert first.wait(600) == 0, first.stderr.read()[-2000:]
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    kept = manifest.filter(pl.col("decision") == "kept").select("source_shard", "key").n_unique()
    assert sum(json.loads((out / "filtered" / "sizes.json").read_text()).values()) == kept
    assert not (out / RUN_LOCK).exists()  # released at the end


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path):
    dead = python("pass")
    dead.wait()
    path = tmp_path / "x.lock"
    record = {"host": socket.gethostname(), "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
              "pid": dead.pid, "started": None, "command": "jestfilter bootstrap", "since": 0, "token": "old"}
    path.write_text(json.dumps(record))
    with FolderLock(path) as lock:
        assert json.loads(path.read_text())["token"] == lock.token
    # a pid that now belongs to another process (its start time differs) is not the holder either
    path.write_text(json.dumps({**record, "pid": os.getpid(), "started": 1}))
    with FolderLock(path):
        pass
    assert not path.exists()


def test_a_lock_from_another_host_is_respected_until_its_heartbeat_stops(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "node-17", "boot": "b", "pid": 4242, "started": 9, "since": time.time(),
                                "command": "jestfilter bootstrap --out shared/run", "token": "t"}))
    with pytest.raises(LockHeld, match="in use by pid 4242 on node-17 .*jestfilter bootstrap --out shared/run"):
        FolderLock(path).acquire()
    monkeypatch.setenv("JESTFILTER_LOCK_STALE_AFTER", "60")
    old = time.time() - 120
    os.utime(path, (old, old))  # no heartbeat for two minutes: that node is gone
    with FolderLock(path):
        assert json.loads(path.read_text())["host"] == socket.gethostname()


def _race(path: str, start, results) -> None:
    start.wait()
    try:
        with FolderLock(path):
            results.put("won")
            time.sleep(1)
    except LockHeld:
        results.put("refused")


def test_of_processes_racing_for_one_lock_exactly_one_wins(tmp_path):
    context = multiprocessing.get_context("fork")  # forked: no second import of torch per racer
    start, results = context.Barrier(4), context.Queue()
    racers = [context.Process(target=_race, args=(str(tmp_path / "race.lock"), start, results)) for _ in range(4)]
    for racer in racers:
        racer.start()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join(60)
    assert outcomes == ["refused"] * 3 + ["won"]


def test_a_shard_held_by_another_process_is_skipped_as_busy_and_done_later(demo, tmp_path, capsys):
    import torch

    from jestfilter.models import create_model, save_local_dir

    torch.manual_seed(0)
    save_local_dir(create_model("jest-tiny"), tmp_path / "model")
    out = tmp_path / "emb"
    out.mkdir()
    holder = hold(out / "00001.lock")
    args = ["embed", "--model", str(tmp_path / "model"), "--shards", demo.web, "--out", str(out)]
    try:
        assert main(args) == 1
        printed = capsys.readouterr().out
        assert "5 done, 0 skipped (already done), 0 failed, 1 busy" in printed
        assert f"in use by pid {holder.pid}" in printed
        assert not (out / "00001.emb.npz").exists()
    finally:
        release(holder)
    assert main(args) == 0
    assert "1 done, 5 skipped" in capsys.readouterr().out
    assert not list(out.glob("*.lock"))
