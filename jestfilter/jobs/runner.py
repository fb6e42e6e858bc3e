"""Run one job over many shards on many ranks: static split, skip what is done, bounded retries.

The rank and world size come from the engine that started the process (torchrun, SLURM) or
from flags; there is no scheduler here. Shard i of the sorted list goes to rank i % world, so
any rank can tell which shards are its own without talking to the others. A shard is done
when its done marker exists: a small JSON written atomically after the shard's outputs
(img2dataset's ``_stats.json`` convention), so a killed job re-run redoes only what was
missing. The marker records the shard it was made from (path, size, modification time), so a
shard replaced or rewritten since is done again. A shard that keeps failing is recorded and
skipped; the job goes on. While a process works on a shard it holds ``<shard>.lock`` in the
output folder (``jestfilter.data.lock``), so two processes given the same shard (a requeued
job, a rank started twice, two world sizes) never write it at once: the second skips it as busy.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import polars as pl
from tqdm import tqdm

from jestfilter.data.atomic import atomic_write, atomic_write_json
from jestfilter.data.layout import shard_stem
from jestfilter.data.lock import FolderLock, LockHeld
from jestfilter.data.shards import shard_identity
from jestfilter.errors import UsageError

DONE_SUFFIX = ".done.json"
LOCK_SUFFIX = ".lock"
SETTINGS = "job.json"
FAILURES_DIR = "failures"
FAILURE_SCHEMA = {"shard": pl.String, "attempt": pl.Int32, "error": pl.String, "rank": pl.Int32,
                  "time": pl.Datetime("us", "UTC"), "final": pl.Boolean}



class Placement(NamedTuple):
    """Which part of the shard list this process owns, and who said so."""

    rank: int
    world_size: int
    source: str  # flags | torchrun | slurm | single


def resolve_placement(rank: int | None = None, world_size: int | None = None,
                      environ: Mapping[str, str] | None = None) -> Placement:
    """Rank and world size: the flags win, then torchrun's RANK/WORLD_SIZE, then SLURM's variables,
    else 0 of 1; bad values raise UsageError."""
    env = os.environ if environ is None else environ
    if (rank is None) != (world_size is None):
        raise UsageError("give --rank and --world-size together")
    if rank is not None:
        placement = Placement(rank, world_size, "flags")
    elif "RANK" in env and "WORLD_SIZE" in env:
        placement = Placement(_int(env, "RANK"), _int(env, "WORLD_SIZE"), "torchrun")
    elif "SLURM_ARRAY_TASK_ID" in env or "SLURM_PROCID" in env:
        placement = _slurm_placement(env)
    else:
        placement = Placement(0, 1, "single")
    if placement.world_size < 1 or not 0 <= placement.rank < placement.world_size:
        raise UsageError(f"rank {placement.rank} of world size {placement.world_size} (from {placement.source}): "
                         "need 0 <= rank < world size")
    return placement


def _slurm_placement(env: Mapping[str, str]) -> Placement:
    """An array element × the tasks inside it: each (element, task) owns one part."""
    tasks, task = _int(env, "SLURM_NTASKS", 1), _int(env, "SLURM_PROCID", 0)
    elements, element = 1, 0
    if "SLURM_ARRAY_TASK_ID" in env:
        element = _int(env, "SLURM_ARRAY_TASK_ID") - _int(env, "SLURM_ARRAY_TASK_MIN", 0)
        elements = _int(env, "SLURM_ARRAY_TASK_COUNT", None)
        if elements is None and "SLURM_ARRAY_TASK_MAX" in env:
            elements = _int(env, "SLURM_ARRAY_TASK_MAX") - _int(env, "SLURM_ARRAY_TASK_MIN", 0) + 1
        if elements is None:
            raise UsageError("SLURM array without SLURM_ARRAY_TASK_COUNT: give --rank and --world-size")
    return Placement(element * tasks + task, elements * tasks, "slurm")


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer") from None


def unique_stems(shards: Sequence[str]) -> list[str]:
    """Sorted shards; every output is named by the shard's base name, so two must not share one."""
    shards = sorted(set(shards))
    seen: dict[str, str] = {}
    for shard in shards:
        stem = shard_stem(shard)
        if stem in seen:
            raise UsageError(f"shards {seen[stem]} and {shard} share the base name {stem!r}: outputs would collide")
        seen[stem] = shard
    return shards


def my_shards(shards: Sequence[str], placement: Placement) -> list[str]:
    """Shard i of the sorted list goes to rank i % world size."""
    return sorted(shards)[placement.rank::placement.world_size]


def done_path(out_dir: str | os.PathLike, shard: str) -> Path:
    return Path(out_dir) / f"{shard_stem(shard)}{DONE_SUFFIX}"


def read_done(out_dir: str | os.PathLike, shard: str) -> dict | None:
    """The done marker's record of ``shard``, or None when it is not done: no marker, or one
    made from another file than ``shard`` is now (replaced, rewritten: it is done again).
    A marker from before markers recorded their shard counts as done."""
    path = done_path(out_dir, shard)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    made_from = record.get("source")
    return record if made_from is None or made_from == list(shard_identity(shard)) else None


def is_done(out_dir: str | os.PathLike, shard: str) -> bool:
    return read_done(out_dir, shard) is not None


def all_done(out_dir: str | os.PathLike, shards: Sequence[str]) -> bool:
    return all(is_done(out_dir, shard) for shard in shards)


@dataclass
class JobSummary:
    name: str
    placement: Placement
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # another live process holds their lock
    samples: int = 0
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return 1 if self.failed or self.busy else 0

    def line(self) -> str:
        p = self.placement
        return (f"{self.name} rank {p.rank}/{p.world_size} ({p.source}): {len(self.done)} done, "
                f"{len(self.skipped)} skipped (already done), {len(self.failed)} failed"
                + (f", {len(self.busy)} busy (held by another process)" if self.busy else "") + "; "
                f"{self.samples:,} samples; {self.seconds:.1f} s")


Work = Callable[[str], "int | dict"]


def check_settings(out_dir: str | os.PathLike, name: str, settings: Mapping) -> None:
    """Record the settings in ``out_dir/job.json``, or refuse a folder made with other ones: a
    done marker only means "done" for the settings that made it."""
    path = Path(out_dir) / SETTINGS
    record = json.loads(json.dumps({"job": name, **settings}))
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise UsageError(f"{out_dir} holds output made with other settings ({', '.join(changed)}): "
                             "use a new folder")
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def run_shards(name: str, shards: Sequence[str], work: Work, out_dir: str | os.PathLike, placement: Placement,
               retries: int = 2, progress: bool = True, settings: Mapping | None = None) -> JobSummary:
    """Call ``work(shard)`` for each of this rank's shards that is not done yet.

    ``work`` returns the number of samples it handled, or a dict with ``samples`` and anything
    else worth keeping in the done marker. Each failed attempt is a row of
    ``out_dir/failures/rank-NNNNN.parquet``; a shard failing ``retries + 1`` times is left
    without a done marker, so the next run tries it again.
    """
    out_dir = Path(out_dir)
    check_settings(out_dir, name, settings or {})
    failures = _FailureTable(out_dir / FAILURES_DIR / f"rank-{placement.rank:05d}.parquet")
    summary = JobSummary(name, placement)
    start = time.perf_counter()
    mine = my_shards(shards, placement)
    bar = tqdm(mine, desc=f"{name} rank {placement.rank}", unit="shard", disable=not progress)
    for shard in bar:
        if is_done(out_dir, shard):
            summary.skipped.append(shard)
            continue
        lock = FolderLock(out_dir / f"{shard_stem(shard)}{LOCK_SUFFIX}", f"shard {shard}")
        try:
            lock.acquire()
        except LockHeld as held:
            summary.busy.append(shard)
            print(f"  {held}", flush=True)
            continue
        try:
            _attempt(shard, work, out_dir, placement, retries, failures, summary)
        finally:
            lock.release()
        bar.set_postfix(done=len(summary.done), skipped=len(summary.skipped), failed=len(summary.failed))
    bar.close()
    summary.seconds = time.perf_counter() - start
    print(summary.line(), flush=True)
    if summary.failed:
        print(f"  failed shards (errors in {failures.path}): {', '.join(summary.failed[:5])}"
              f"{' ...' if len(summary.failed) > 5 else ''}", flush=True)
    return summary


def _attempt(shard: str, work: Work, out_dir: Path, placement: Placement, retries: int,
             failures: "_FailureTable", summary: JobSummary) -> None:
    """Up to ``retries + 1`` attempts at one shard, under its lock."""
    if is_done(out_dir, shard):  # finished by another process while we waited
        summary.skipped.append(shard)
        return
    for attempt in range(1, retries + 2):
        shard_start = time.perf_counter()
        source = list(shard_identity(shard))  # before reading: a shard rewritten meanwhile is not done
        try:
            result = work(shard)
        except Exception as error:  # any failure of one shard is recorded, never fatal
            final = attempt == retries + 1
            failures.add(shard, attempt, error, placement.rank, final)
            if final:
                summary.failed.append(shard)
            continue
        record = result if isinstance(result, dict) else {"samples": int(result)}
        record = {**record, "shard": shard, "source": source, "rank": placement.rank, "attempt": attempt,
                  "seconds": round(time.perf_counter() - shard_start, 3), "time": _now().isoformat()}
        atomic_write_json(done_path(out_dir, shard), record)  # last: the shard is done
        summary.done.append(shard)
        summary.samples += record["samples"]
        break


class _FailureTable:
    """Failed attempts of this run, rewritten whole after each failure so a kill keeps them."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        path.unlink(missing_ok=True)  # a table describes the latest run of this rank

    def add(self, shard: str, attempt: int, error: Exception, rank: int, final: bool) -> None:
        message = "".join(traceback.format_exception_only(type(error), error)).strip()
        self.rows.append({"shard": shard, "attempt": attempt, "error": message, "rank": rank,
                          "time": _now(), "final": final})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame = pl.DataFrame(self.rows, schema=FAILURE_SCHEMA)
        atomic_write(self.path, frame.write_parquet)


def read_failures(out_dir: str | os.PathLike) -> pl.DataFrame:
    """Every rank's failed attempts of its latest run."""
    parts = sorted((Path(out_dir) / FAILURES_DIR).glob("rank-*.parquet"))
    return pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame(schema=FAILURE_SCHEMA)


def _now() -> datetime:
    return datetime.now(timezone.utc)
