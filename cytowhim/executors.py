"""Where ``cytowhim run`` gates its tubes: in this process, in local worker processes that die
with it, or on a Dask distributed cluster.

Every executor calls ``fn(task)`` for each task and hands ``(index, result)`` to ``on_done`` in
this process as soon as that task has finished (local processes and Dask: in the order they
finish), so the caller can write each specimen's results while the others are still gated. The
executors know nothing of gating: ``fn`` must return its own failures; an exception from it is
the executor's failure (:class:`~cytowhim.errors.ExecutorError`, one line).

Worker processes die with the process that started them: on Linux through
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` set in each worker as it starts, and on any system through
a watchdog thread in each worker that exits it within :data:`WATCH_INTERVAL` seconds of its
parent's death. A ``kill -9`` of the parent alone therefore leaves no worker running, and an
exception in the parent (Ctrl-C, a full disk) stops the workers before it is raised.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ExecutorError

#: Seconds to wait for a Dask scheduler before giving up (distributed's default is 30 s).
DASK_CONNECT_TIMEOUT = 10
#: Seconds between a worker's checks that its parent is still alive (the fallback to prctl).
WATCH_INTERVAL = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

OnDone = Callable[[int, Any], None]


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    on_done: OnDone,
    jobs: int = 1,
    scheduler: str | None = None,
    describe: Callable[[Any], str] = str,
) -> None:
    """``on_done(i, fn(tasks[i]))`` for every task: in this process (``jobs`` 1), in ``jobs``
    local worker processes, or on the Dask cluster at ``scheduler``. ``describe(task)`` names a
    task in error messages (e.g. its file)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: give the number of worker processes, a whole number >= 1")
    if scheduler is not None:
        on_dask(fn, tasks, scheduler, on_done, describe)
    elif jobs == 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            on_done(i, fn(task))
    else:
        in_processes(fn, tasks, on_done, jobs, describe)


# --- local worker processes -------------------------------------------------------------------


def _worker_start(parent_pid: int) -> None:
    """The initializer of each worker process: die with the parent; leave Ctrl-C to the parent
    (a terminal sends SIGINT to the whole process group; the parent stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process exit when ``parent_pid``, its parent, dies: PR_SET_PDEATHSIG
    on Linux, and a watchdog thread everywhere. Exits at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="cytowhim-parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL)
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)


def in_processes(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    on_done: OnDone,
    jobs: int,
    describe: Callable[[Any], str] = str,
) -> None:
    """The tasks in ``jobs`` worker processes (spawned: a forked child inherits locks held by
    this process's threads, BLAS or logging, and can hang on them); ``on_done`` as each finishes.
    Any exception here (from ``on_done``, Ctrl-C) kills the workers before it propagates."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)),
        mp_context=context,
        initializer=_worker_start,
        initargs=(os.getpid(),),
    )
    try:
        index = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        pending = set(index)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=index.__getitem__):
                i = index[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise ExecutorError(
                        "a worker process died while gating (killed by the system, e.g. out "
                        f"of memory?); {describe(tasks[i])} was among the files in flight. "
                        "Finished specimens are kept: rerun to resume, with fewer --jobs"
                    ) from None
                on_done(i, result)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool) -> None:
    """Cancel what has not started and kill the workers (they may be mid-way through a file)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):
            pass
    for process in processes:
        try:
            process.join(timeout=5)
        except (OSError, ValueError, AssertionError):
            pass


# --- Dask distributed -------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def on_dask(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    scheduler: str,
    on_done: OnDone,
    describe: Callable[[Any], str] = str,
) -> None:
    """The same calls on a Dask distributed cluster (``--executor dask``); the files and strategy
    paths must be readable from the workers.

    Raises :class:`~cytowhim.errors.ExecutorError` (one line naming the scheduler and what to do)
    when dask.distributed is missing, the address is not one, the scheduler cannot be reached
    within :data:`DASK_CONNECT_TIMEOUT` seconds, or the cluster fails while gating. An exception
    from ``on_done`` propagates as it is."""
    if not scheduler or not str(scheduler).strip():
        # Client("") would quietly start a local cluster
        raise ExecutorError("--executor dask needs a scheduler address, e.g. tcp://10.0.0.5:8786")
    try:
        from distributed import Client, as_completed
        from distributed.comm import get_address_host_port, parse_address
    except ImportError:
        raise ExecutorError(
            f"cannot use the Dask scheduler {scheduler}: dask.distributed is not installed; "
            "pip install 'cytowhim[dask]' (or run without --executor dask)"
        ) from None
    try:
        # checked before Client(): a Client that fails on a malformed address hangs for 20 s
        # in its finaliser when the interpreter exits
        if parse_address(scheduler)[0] != "inproc":
            get_address_host_port(scheduler)
        client = Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except ValueError as exc:
        raise ExecutorError(
            f"{scheduler!r} is not a Dask scheduler address ({' '.join(str(exc).split())}): "
            "give it as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {scheduler} within {DASK_CONNECT_TIMEOUT} s "
            f"({_one_line(exc)}): check the address and that the scheduler is running "
            "('dask scheduler') and reachable from this machine"
        ) from None

    def failed(exc: BaseException, current: int | None) -> ExecutorError:
        # the cluster, not fn: lost workers, scheduler gone, imports
        where = f" while gating {describe(tasks[current])}" if current is not None else ""
        return ExecutorError(
            f"the Dask cluster at {scheduler} failed{where} ({_one_line(exc)}): check that the "
            "scheduler and workers are running, that the workers have cytowhim installed "
            "(pip install 'cytowhim[dask]') and can read the FCS and strategy files"
        )

    with client:
        try:
            futures = client.map(fn, list(tasks), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            finished = as_completed(futures, loop=client.loop)
        except Exception as exc:
            raise failed(exc, None) from exc
        while True:
            current = None
            try:
                future = next(finished, None)
                if future is None:
                    break
                current = index[future.key]
                result = future.result()  # fn returns its own failures
            except Exception as exc:
                raise failed(exc, current) from exc
            on_done(current, result)
