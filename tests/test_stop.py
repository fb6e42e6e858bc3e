"""SIGTERM and Ctrl-C stop a run cleanly: one line saying where it stopped and how to resume, exit
143 / 130, DataLoader workers ended; and workers end by themselves when their parent is killed."""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jestfilter.datasets.demo import build_demo_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"), curated=20, web=400, eval=20, samples_per_shard=100,
                           progress=False)


def train_args(demo, out, steps=400, batch_size=8):
    return ["train", "--precision", "fp32", "--shards", demo.web, "--out", str(out), "--steps", str(steps),
            "--batch-size", str(batch_size),
            "--workers", "2", "--checkpoint-every", "3", "--eval-every", "1000", "--shuffle-buffer", "50"]


def start(args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "jestfilter", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited


def wait_until(condition, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def running_with_workers(demo, out, batch_size=8) -> tuple[subprocess.Popen, list[int]]:
    """A training run past its first checkpoint, and its two DataLoader workers."""
    run = start(train_args(demo, out, batch_size=batch_size))
    # the checkpoint before the first step comes before the workers start: wait for both
    assert wait_until(lambda: ((out / "checkpoint.pt").exists() and len(children(run.pid)) >= 2)
                      or run.poll() is not None, 300), "no checkpoint"
    assert run.poll() is None, run.stderr.read()[-2000:]
    workers = children(run.pid)
    assert len(workers) >= 2, workers
    return run, workers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_one_line_and_ends_its_workers(demo, tmp_path, signum):
    out = tmp_path / "run"
    run, workers = running_with_workers(demo, out)
    run.send_signal(signum)
    stderr = run.communicate(timeout=120)[1]
    assert run.returncode == 128 + signum
    last = stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"jestfilter train: stopped by {name} during step "), last
    assert "of train; the last checkpoint is at step " in last and str(out / "checkpoint.pt") in last
    assert last.endswith(f"the same command resumes: python -m jestfilter {shlex.join(train_args(demo, out))}")
    assert wait_until(lambda: not any(alive(w) for w in workers), 30), "DataLoader workers left running"
    assert not (out / "jestfilter.lock").exists()
    if signum == signal.SIGTERM:  # and it resumes: a shorter run from the same checkpoint ends at once
        resumed = start(train_args(demo, out, steps=12))
        assert resumed.communicate(timeout=300) and resumed.returncode == 0
        assert (out / "final" / "open_clip_model.safetensors").exists()


def test_workers_end_by_themselves_when_the_main_process_is_killed(demo, tmp_path):
    # super-batches of 320 (3 MB) fill the pipe to the parent: without PR_SET_PDEATHSIG a worker
    # then waits for a reader that never comes
    run, workers = running_with_workers(demo, tmp_path / "run", batch_size=64)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert wait_until(lambda: not any(alive(w) for w in workers), 30), "DataLoader workers outlived their parent"


def test_a_full_disk_at_a_checkpoint_ends_the_run_with_one_line_and_no_temporary_file(demo, tmp_path):
    def small_files():  # writes past 200 KB fail as on a full disk (EFBIG instead of ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "jestfilter", *train_args(demo, out, steps=6)], cwd=ROOT, env=env,
                         text=True, capture_output=True, preexec_fn=small_files, timeout=600)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"jestfilter train: error: cannot write {out / 'checkpoint.pt'}: File too large")
    assert sorted(p.name for p in out.iterdir()) == []  # no .checkpoint.pt.tmp, the lock released


def test_a_read_only_output_folder_fails_with_one_line(demo, tmp_path, capsys):
    from jestfilter.cli import main

    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        assert main(train_args(demo, out / "run", steps=2)) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"jestfilter train: error: cannot write {out / 'run'}: ") and "\n" not in error
        assert main(["embed", "--model", "jest-tiny", "--shards", demo.web, "--out", str(out)]) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"jestfilter embed: error: cannot write {out / 'job.json'}: ") and "\n" not in error


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only: chmod for a user, the immutable flag for root (who ignores modes)."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    probe = folder / ".probe"
    try:
        probe.touch()
        probe.unlink()
        writable = True
    except OSError:
        writable = False
    try:
        if writable:
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_full_disk_while_saving_a_model_ends_the_run_with_one_line(demo, tmp_path):
    from jestfilter.models import create_model, save_local_dir

    def small_files():  # writes past 1 MB fail as on a full disk: the model's weights (13 MB) do not fit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    reference = tmp_path / "reference"
    save_local_dir(create_model("jest-tiny"), reference)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(demo.eval), "--out", str(out),
            "--reference", str(reference), "--model", "jest-tiny", "--compare", "none", "--no-progress"]
    run = subprocess.run([sys.executable, "-m", "jestfilter", *args], cwd=ROOT, env=env, text=True,
                         capture_output=True, preexec_fn=small_files, timeout=600)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last == f"jestfilter bootstrap: error: cannot write {out / 'reference'}: File too large"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".reference")]  # no temporary folder left
