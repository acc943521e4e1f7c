"""One executor interface for embarrassingly parallel sweeps (SBC replications, seeds x K grids, CV folds).

    executor = get_executor(None)                       # local processes (the default), one per core
    executor = get_executor("tcp://10.0.0.5:8786")      # a running Dask distributed scheduler (Dask's own Client)
    executor = get_executor(client)                     # an existing dask.distributed.Client (e.g. a LocalCluster's)
    executor = get_executor("serial")                   # in this process (debugging; objects need not pickle)
    results = run_sweep(task_fn, {"rep-000": {...}, ...}, out="sbc-out", executor=executor)

``task_fn`` is a module-level function returning a JSON-serialisable dict; every task carries its own seed, so a
task's result does not depend on where it runs. With ``out``, each finished task is written at once to
out/<key>.json (through a temporary file and a rename): an interrupted sweep loses no finished work, and a rerun
loads those files and runs only the missing tasks.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

from models._io import write_json

__all__ = ["get_executor", "run_sweep", "SerialExecutor", "ProcessExecutor", "DaskExecutor"]


def _call(fn: Callable, kwargs: dict) -> dict:
    return fn(**kwargs)


class SerialExecutor:
    """Runs tasks one after another in this process."""

    name = "serial"

    def imap(self, fn: Callable, tasks: dict[str, dict]) -> Iterator[tuple[str, dict]]:
        for key, kwargs in tasks.items():
            yield key, fn(**kwargs)

    def close(self) -> None:
        pass


def _limit_threads(threads: int) -> None:
    """Worker initialiser: ``threads`` torch and BLAS threads per process, so the workers do not oversubscribe
    the cores between them."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


class ProcessExecutor:
    """Local worker processes (spawned, so each starts with fresh torch threads), each limited to
    cores / workers threads (at least 1)."""

    def __init__(self, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.threads = max(1, (os.cpu_count() or 1) // self.workers)
        self.name = f"local processes x {self.workers}"
        self._pool: ProcessPoolExecutor | None = None

    def imap(self, fn: Callable, tasks: dict[str, dict]) -> Iterator[tuple[str, dict]]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_limit_threads,
                                             initargs=(self.threads,))
        futures = {self._pool.submit(_call, fn, kwargs): key for key, kwargs in tasks.items()}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def terminate(self) -> None:
        """Stop now: kill the worker processes (their running tasks are lost; finished ones are on disk)."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """A Dask distributed cluster through Dask's own Client (no cluster code of ours)."""

    def __init__(self, client: Any, owns_client: bool = False):
        self.client = client
        self._owns = owns_client
        self.name = f"dask {client.scheduler.address}"

    def imap(self, fn: Callable, tasks: dict[str, dict]) -> Iterator[tuple[str, dict]]:
        from distributed import as_completed as dask_as_completed

        futures = {self.client.submit(_call, fn, kwargs, pure=False): key for key, kwargs in tasks.items()}
        try:
            for fut in dask_as_completed(list(futures)):
                yield futures[fut], fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._owns:
            self.client.close()


def get_executor(scheduler: Any = None, workers: int | None = None):
    """None or "local": local processes (``workers``, default one per core); "serial": this process;
    "tcp://HOST:PORT" (or tls://, ws://): connect a dask.distributed Client to that scheduler;
    a dask.distributed Client: use it."""
    if scheduler is None or scheduler == "local":
        return ProcessExecutor(workers)
    if scheduler == "serial":
        return SerialExecutor()
    if isinstance(scheduler, str):
        if "://" not in scheduler:
            raise ValueError(f"scheduler must be 'local', 'serial' or an address like tcp://HOST:PORT, got {scheduler!r}")
        from distributed import Client

        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ValueError(f"scheduler: could not connect to {scheduler} ({exc})") from exc
        return DaskExecutor(client, owns_client=True)
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler"):
        return DaskExecutor(scheduler)
    raise ValueError(f"scheduler must be None, 'local', 'serial', an address or a dask Client, got {scheduler!r}")


def run_sweep(fn: Callable[..., dict], tasks: dict[str, dict], *, out: str | Path | None = None, executor: Any = None,
              progress: bool = True, desc: str = "sweep",
              on_result: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Run ``fn(**tasks[key])`` for every key; returns {key: result} in the order of ``tasks``.

    With ``out``, finished results are written as they arrive and tasks whose out/<key>.json exists are skipped
    (the sweep resumes). ``executor`` from :func:`get_executor` (default: local processes). ``on_result(key,
    result)`` is called as each task finishes (not for results loaded from ``out``)."""
    from tqdm.auto import tqdm

    bad = [k for k in tasks if not k or "/" in k or k.startswith(".")]
    if bad:
        raise ValueError(f"task keys must be non-empty file names, got {bad[:3]}")
    done: dict[str, dict] = {}
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for key in tasks:
            path = folder / f"{key}.json"
            if path.is_file():
                done[key] = json.loads(path.read_text())
    todo = {k: v for k, v in tasks.items() if k not in done}
    own = executor is None
    executor = get_executor(None) if executor is None else executor
    bar = tqdm(total=len(tasks), initial=len(done), desc=f"{desc} ({executor.name})", disable=not progress)
    previous = _sigterm_raises()
    try:
        for key, result in executor.imap(fn, todo):
            if folder is not None:
                write_json(folder / f"{key}.json", result)
            done[key] = result
            if on_result is not None:
                on_result(key, result)
            bar.update()
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM: stop the workers too, keep what is on disk
        if hasattr(executor, "terminate"):
            executor.terminate()
        raise
    finally:
        bar.close()
        if previous is not _UNCHANGED:
            signal.signal(signal.SIGTERM, previous)
        if own:
            executor.close()
    return {k: done[k] for k in tasks}


_UNCHANGED = object()


def _sigterm_raises():
    """Make SIGTERM raise SystemExit in this (main) thread while a sweep runs, so that worker processes are
    stopped rather than orphaned; returns the previous handler (_UNCHANGED off the main thread: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        return _UNCHANGED

    def handler(signum, frame):
        raise SystemExit(128 + signum)
    return signal.signal(signal.SIGTERM, handler)
