"""Worker processes for the coding engines in bulk: ``CodingService.working_drgs`` (``chartkeeper code
regroup``) edits and groups thousands of stays; these processes read and assess them (each on a
database connection of its own, opened by its first task and kept for the next run on the same
database) while the calling process stores what they hand back (one process alone spends three
quarters or more of its time reading and assessing, so a second core nearly doubles the rate).

One pool per process, created on first use (:func:`start`) and reused by every later run; a run asking
for another size replaces it. On Linux the workers are forked from the caller, so each starts with the
ICD-10-CM tabular, the grouper and the code editor already loaded and whatever single-code answers the
caller has worked out; the initializer opens any engine not yet open and moves what it inherited out of
the cyclic garbage collector's way (:func:`gc.freeze`). Create the pool before the process starts
threads where it can (the CLI starts it before its progress bar and its database engine): a fork copies
only the calling thread. Elsewhere the workers are spawned and load the engines themselves.

A worker that dies, raises or stops answering fails the run with :class:`WorkerError`, whose message is
a sentence; a pool with a dead worker is discarded and the next run starts a fresh one.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

TASK_TIMEOUT = 600.0  # seconds one task may take before its worker is taken for stuck (a task: ~0.01 s)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_size = 0


class WorkerError(RuntimeError):
    """A worker process failed: the message says what happened and what to do."""


def default_workers() -> int:
    """Worker processes for a bulk run: every processor this process may use but one (for the caller,
    which reads and writes the database meanwhile), at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


def _warm() -> None:
    """Each worker's initializer: the engines open, the ICD-10-CM tabular loaded, what was inherited
    frozen out of the collector's way, the collector on (the caller may have paused its own)."""
    from chartkeeper.coding import drg, edits

    drg.grouper()
    drg.code_editor()
    edits.code_facts(edits._NEUTRAL_PDX)
    gc.freeze()
    gc.enable()


def _pid() -> int:
    return os.getpid()


def start(workers: int) -> ProcessPoolExecutor:
    """The pool of ``workers`` processes, each started and warm when this returns (created on first use
    and reused; a different size replaces the pool)."""
    global _pool, _size
    if workers < 1:
        raise ValueError(f"workers is {workers}: give at least 1 worker process, or assess in-process.")
    with _lock:
        if _pool is not None and _size == workers and not getattr(_pool, "_broken", False):
            return _pool
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_warm)
        try:
            for f in [pool.submit(_pid) for _ in range(workers)]:  # every worker is launched by the first
                f.result(timeout=TASK_TIMEOUT)
        except BaseException:
            _kill(pool)
            raise
        _pool, _size = pool, workers
        return pool


def pids() -> list[int]:
    """The process ids of the running pool's workers (none when there is no pool)."""
    with _lock:
        return sorted(getattr(_pool, "_processes", None) or ()) if _pool is not None else []


def stop() -> None:
    """Shut the pool down (its workers exit); the next :func:`start` creates a new one."""
    global _pool, _size
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
        _pool, _size = None, 0


def _kill(pool: ProcessPoolExecutor) -> None:
    for p in list((getattr(pool, "_processes", None) or {}).values()):  # a stuck worker never exits by itself
        p.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool, _size
    with _lock:
        if _pool is pool:
            _pool, _size = None, 0
    _kill(pool)


def submit(pool: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> Future[T]:
    try:
        return pool.submit(fn, *args)
    except BrokenProcessPool:
        _discard(pool)
        raise WorkerError("A worker process of the coding engines had stopped before this run's work was handed "
                          "to it: nothing more was stored; run the command again (a fresh set of workers starts)."
                          ) from None


def result(pool: ProcessPoolExecutor, future: Future[T], what: str) -> T:
    """What ``future`` (a task on ``pool``) returned; :class:`WorkerError` naming ``what`` (the work, e.g.
    "stays e1 to e125") when its worker died, raised or did not answer within :data:`TASK_TIMEOUT`."""
    try:
        return future.result(timeout=TASK_TIMEOUT)
    except BrokenProcessPool:
        _discard(pool)
        raise WorkerError(f"A worker process of the coding engines stopped while assessing {what} (it was killed "
                          f"or ran out of memory): those stays and the ones after them were not stored; run the "
                          f"command again (a fresh set of workers starts).") from None
    except FutureTimeout:
        _discard(pool)
        raise WorkerError(f"A worker process of the coding engines did not answer within {TASK_TIMEOUT:.0f} "
                          f"seconds while assessing {what}: it was stopped, and those stays and the ones after "
                          f"them were not stored; run the command again.") from None
    except Exception as exc:  # the task raised: the worker is fine, the run is not
        raise task_failed(what, exc) from exc


def task_failed(what: str, exc: BaseException) -> WorkerError:
    """The error for work that raised ``exc`` (in a worker process or in the caller: the same sentence)."""
    return WorkerError(f"Assessing {what} failed ({exc.__class__.__name__}): those stays and the ones after them "
                       f"were not stored; check the stays' stored records, then run the command again.")


__all__ = ["TASK_TIMEOUT", "WorkerError", "default_workers", "pids", "result", "start", "stop", "submit", "task_failed"]
