"""An exclusive lock on an output folder (or one output shard), on a local or shared filesystem.

Two runs writing the same folder corrupt it: shards of one run, a manifest of the other, and a
``_SUCCESS`` that vouches for both. A lock is a file created with ``O_CREAT | O_EXCL`` (atomic
on local filesystems and on NFS v3 and later) that says who holds it: host, boot, pid, the
process's start time, the command and since when. A thread touches it every
``HEARTBEAT_SECONDS`` while it is held.

A lock is stale, and taken over, when its holder is gone: on the same host (and boot) the pid
is dead or now belongs to another process; on another host the heartbeat stopped for
``$JESTFILTER_LOCK_STALE_AFTER`` seconds (default 600: a crashed node). Otherwise ``LockHeld``
names the holder in one line. Taking over renames the stale file away first and checks it was
the one judged stale, so two processes cannot both take it over.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from jestfilter.errors import UsageError

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_ENV = "JESTFILTER_LOCK_STALE_AFTER"
DEFAULT_STALE_AFTER = 600.0
RUN_LOCK = "jestfilter.lock"  # in a bootstrap's or a training run's --out


class LockHeld(UsageError):
    """Another live process holds the lock."""


class FolderLock:
    """``with FolderLock(path): ...`` holds ``path`` (a lock file) for the block."""

    def __init__(self, path: str | os.PathLike, what: str | None = None):
        self.path = Path(path)
        self.what = what or str(self.path.parent)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # someone removed or replaced the file while we held it

    def acquire(self) -> "FolderLock":
        """Take the lock, taking over a stale one; ``LockHeld`` when a live process has it."""
        record = json.dumps(_me(self.token))
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            try:
                os.write(fd, record.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._thread = threading.Thread(target=self._beat, name=f"lock {self.path}", daemon=True)
            self._thread.start()
            return self
        raise LockHeld(f"{self.what} is being locked and unlocked by other processes: try again")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._holds():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if not self._holds():
                self.lost = True
                print(f"jestfilter: warning: the lock {self.path} was removed or taken by another process",
                      file=sys.stderr, flush=True)
                return
            os.utime(self.path)

    def _holds(self) -> bool:
        holder, _ = _read(self.path)
        return holder is not None and holder.get("token") == self.token

    def _take_over_if_stale(self) -> None:
        holder, raw = _read(self.path)
        if raw is None:
            return  # released meanwhile: try again
        why = stale_reason(holder, self.path)
        if why is None:
            raise LockHeld(f"{self.what} is in use by {describe(holder, self.path)}: wait for it to end or "
                           f"use another folder (if that run is gone, remove {self.path})")
        moved = self.path.with_name(f"{self.path.name}.stale-{self.token}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return  # someone else took it over first
        if moved.read_bytes() != raw:  # a fresh lock taken since we looked: put it back
            try:
                os.link(moved, self.path)
            except FileExistsError:
                pass
        moved.unlink(missing_ok=True)


def stale_reason(holder: dict | None, path: Path) -> str | None:
    """Why the lock at ``path`` (holding ``holder``) is stale, or None when its holder may live."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return "gone"
    if holder is None:  # being written right now, or a writer that died mid-write
        return "unreadable and no heartbeat" if age > stale_after() else None
    me = _me("")
    if holder.get("host") == me["host"] and holder.get("boot") == me["boot"]:
        if not _alive(holder.get("pid", -1)):
            return "its process is gone"
        if holder.get("started") is not None and holder.get("started") != _start_time(holder["pid"]):
            return "its pid now belongs to another process"
        return None
    return "no heartbeat" if age > stale_after() else None


def describe(holder: dict | None, path: Path) -> str:
    if holder is None:
        return f"a process that is writing {path}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    try:
        beat = f", heartbeat {time.time() - path.stat().st_mtime:.0f} s ago"
    except FileNotFoundError:
        beat = ""
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {since} ({holder.get('command', '?')}"
            f"{beat})")


def stale_after() -> float:
    value = os.environ.get(STALE_AFTER_ENV)
    try:
        return float(value) if value is not None else DEFAULT_STALE_AFTER
    except ValueError:
        raise ValueError(f"{STALE_AFTER_ENV} must be a number of seconds, got {value!r}") from None


def _read(path: Path) -> tuple[dict | None, bytes | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        return json.loads(raw), raw
    except ValueError:
        return None, raw


def _me(token: str) -> dict:
    pid, program = os.getpid(), os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    program = "jestfilter" if program == "__main__.py" else program  # python -m jestfilter
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "started": _start_time(pid),
            "command": shlex.join([program, *sys.argv[1:]]), "since": time.time(), "token": token}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return pid > 0


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux), to tell it from a later process
    that got the same pid; None where /proc is not there."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
