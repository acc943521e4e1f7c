"""One executor interface for embarrassingly parallel sweeps (SBC replications, seeds x K grids, CV folds).

    executor = get_executor(None)                       # local processes (the default), one per core
    executor = get_executor("tcp://10.0.0.5:8786")      # a running Dask distributed scheduler (Dask's own Client)
    executor = get_executor(client)                     # an existing dask.distributed.Client (e.g. a LocalCluster's)
    executor = get_executor("serial")                   # in this process (debugging; objects need not pickle)
    results = run_sweep(task_fn, {"rep-000": {...}, ...}, out="sbc-out", executor=executor)

``task_fn`` is a module-level function returning a JSON-serialisable dict of finite values; every task carries its
own seed, so a task's result does not depend on where it runs. With ``out``, each finished task is written at once
to out/<key>.json (through a temporary file and a rename): an interrupted sweep loses no finished work, and a rerun
loads those files and runs only the missing tasks.

A stored task is reused only when it belongs to the same configuration: out/manifest.json records the task function,
the package version and a content digest (models._io.digest: data, model and hyperparameters, settings) of every
task's arguments, with a readable form of the arguments all tasks share. A rerun whose arguments differ for a stored
task refuses with SweepConfigError (a new folder, or ``overwrite=True`` / ``--overwrite``, starts again); a folder with
task files and no manifest is refused the same way. Each stored task file is checked (JSON, the fields the others
have, finite numbers) before it counts as done; a damaged one is run again, with a warning.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

from models._io import describe_value, digest, write_json

__all__ = ["run_config", "claim_run_folder", "finish_run_folder", "get_executor", "run_sweep", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "SweepConfigError",
           "MANIFEST", "check_finite_json", "task_config"]

MANIFEST = "manifest.json"


class SweepConfigError(ValueError):
    """An output folder that holds results of another configuration (or of unknown origin)."""


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
            # only the unfinished ones (an early exit): the scheduler tells every client of a cancellation, and
            # a client connecting at that moment fails distributed's handshake (see inference.distributed.connect)
            pending = [fut for fut in futures if not fut.done()]
            if pending:
                self.client.cancel(pending)

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
        from inference.distributed import connect

        return DaskExecutor(connect(scheduler), owns_client=True)
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler"):
        return DaskExecutor(scheduler)
    raise ValueError(f"scheduler must be None, 'local', 'serial', an address or a dask Client, got {scheduler!r}")


def check_finite_json(obj: Any, where: str = "result") -> None:
    """Raise ValueError if ``obj`` (dicts, lists, numbers, strings, None) holds a NaN or infinite number."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where} is {obj}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_finite_json(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite_json(v, f"{where}[{i}]")


def _fn_name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("inferlab")
    except PackageNotFoundError:
        return "unknown"


def task_config(fn: Callable, tasks: dict[str, dict]) -> dict[str, Any]:
    """What a sweep's manifest records: the task function, the package version, a digest of every task's arguments,
    and the arguments every task shares (readable form and digest). Each distinct argument object (the data, the
    model: usually one object shared by every task) is digested once."""
    cache: dict[int, tuple[str, Any]] = {}  # id -> (digest, the object, kept alive so that its id stays unique)

    def arg_digest(value: Any) -> str:
        if id(value) not in cache:
            cache[id(value)] = (digest(value), value)
        return cache[id(value)][0]

    per_task = {key: {name: arg_digest(v) for name, v in kw.items()} for key, kw in tasks.items()}
    first_key = next(iter(tasks), None)
    shared = {}
    if first_key is not None:
        for name, d in per_task[first_key].items():
            if all(args.get(name) == d for args in per_task.values()):
                shared[name] = {"value": describe_value(tasks[first_key][name]), "digest": d}
    return {"task_function": _fn_name(fn), "inferlab_version": _version(), "shared": shared,
            "tasks": {key: digest(args) for key, args in per_task.items()}, "result_fields": None}


def _shared_differences(old: dict, new: dict) -> list[str]:
    diffs = []
    old_shared, new_shared = old.get("shared", {}), new["shared"]
    for name in sorted(set(old_shared) & set(new_shared)):
        o, n = old_shared[name], new_shared[name]
        if o["digest"] != n["digest"]:
            diffs.append(f"{name}: {o['value']} -> {n['value']}" if o["value"] != n["value"] else
                         f"{name}: same description, other content (e.g. other data of the same size)")
    return diffs


def _config_differences(old: dict, new: dict, stored: list[str] | None = None) -> list[str]:
    """How ``new`` differs from the configuration ``old`` in ways that matter: another task function, or (sweeps)
    other arguments for a task whose result is stored, or (one-off runs, ``stored`` None) other shared settings."""
    if old.get("task_function") != new["task_function"]:
        return [f"task: {old.get('task_function')} -> {new['task_function']}"]
    if stored is None:
        return _shared_differences(old, new)
    changed = [k for k in stored if k in new["tasks"] and old.get("tasks", {}).get(k) != new["tasks"][k]]
    if not changed:
        return []
    return _shared_differences(old, new) or [f"the arguments of task(s) {', '.join(changed[:3])}"]


def _open_folder(folder: Path, config: dict, overwrite: bool) -> dict:
    """The manifest this sweep continues (or starts), after the checks that the folder is this sweep's."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = sorted(p.name for p in folder.glob("*.json") if p.name != MANIFEST)
    old = _read_manifest(folder)
    if overwrite:
        for name in stored:
            (folder / name).unlink()
        old = None
    elif old is None and stored:
        raise SweepConfigError(f"{folder} holds {len(stored)} task file(s) ({', '.join(stored[:2])}, ...) but no "
                               f"{MANIFEST}, so what produced them is unknown; use a new output folder, or "
                               "--overwrite (overwrite=True) to discard them")
    elif old is not None:
        diffs = _config_differences(old, config, [n[:-len(".json")] for n in stored])
        if diffs:
            raise SweepConfigError(f"{folder} holds a sweep with another configuration ({'; '.join(diffs)}); use a "
                                   "new output folder, or --overwrite (overwrite=True) to discard it and start again")
    manifest = dict(config)
    if old is not None:
        manifest["tasks"] = {**old.get("tasks", {}), **config["tasks"]}
        manifest["result_fields"] = old.get("result_fields")
    write_json(folder / MANIFEST, manifest)
    return manifest


def _read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, None when there is none (an unreadable one reads as an unknown configuration)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"task_function": "(unreadable manifest)"}


def run_config(kind: str, **named: Any) -> dict[str, Any]:
    """The manifest of a one-off run folder (compare): its kind, the package version, and each named part of its
    configuration (model, data, methods, settings, seed) in readable form with its content digest."""
    return {"task_function": kind, "inferlab_version": _version(), "tasks": {},
            "shared": {k: {"value": describe_value(v), "digest": digest(v)} for k, v in named.items()}}


RUN_FILE_SUFFIXES = (".nc", ".csv", ".md", ".png")


def claim_run_folder(folder: Path, config: dict, overwrite: bool) -> list[str]:
    """Check, before any work, that ``folder`` may take a run of ``config``: it is new, empty of results, or holds a
    run of the same configuration (rerun in place), or ``overwrite`` is set. Returns the names of the files the
    earlier run wrote (to remove those the new run does not write again, see :func:`finish_run_folder`).

    Raises SweepConfigError for a folder holding another configuration's run, or result files without a manifest."""
    old = _read_manifest(folder)
    if old is not None:
        diffs = _config_differences(old, config)
        if diffs and not overwrite:
            raise SweepConfigError(f"{folder} holds a {old.get('task_function')} run with another configuration "
                                   f"({'; '.join(diffs)}); use a new output folder, or --overwrite to replace it")
        return list(old.get("files", []))
    found = sorted(p.name for p in folder.iterdir() if p.suffix in RUN_FILE_SUFFIXES) if folder.is_dir() else []
    if found and not overwrite:
        raise SweepConfigError(f"{folder} holds result files ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
                               f" but no {MANIFEST}, so what produced them is unknown; use a new output folder, or "
                               "--overwrite to replace them")
    return found


def finish_run_folder(folder: Path, config: dict, files: list, previous: list[str]) -> Path:
    """After a run wrote ``files`` into ``folder``: remove the earlier run's files it did not write again (so that no
    stale plot or result sits beside the new table) and write the manifest listing what belongs to the run."""
    names = sorted({Path(f).name for f in files})
    for name in previous:
        if name not in names and name != MANIFEST:
            (folder / name).unlink(missing_ok=True)
    return write_json(folder / MANIFEST, dict(config, files=names))


def _load_task(path: Path, fields: list[str] | None) -> dict | None:
    """A stored task result, or None (with a warning) when it is damaged: not JSON, not a dict, other fields than
    the sweep's, or a non-finite number."""
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
        if fields is not None and sorted(result) != fields:
            raise ValueError(f"fields {sorted(result)} instead of {fields}")
        check_finite_json(result)
    except (ValueError, OSError) as exc:
        warnings.warn(f"{path} is damaged ({exc}); running that task again", stacklevel=3)
        return None
    return result


def run_sweep(fn: Callable[..., dict], tasks: dict[str, dict], *, out: str | Path | None = None, executor: Any = None,
              progress: bool = True, desc: str = "sweep", on_result: Callable[[str, dict], None] | None = None,
              overwrite: bool = False) -> dict[str, dict]:
    """Run ``fn(**tasks[key])`` for every key; returns {key: result} in the order of ``tasks``.

    With ``out``, finished results are written as they arrive and tasks whose out/<key>.json exists (and belongs
    to this configuration, see the module docstring) are skipped: the sweep resumes. ``overwrite``: discard what
    ``out`` holds first. ``executor`` from :func:`get_executor` (default: local processes). ``on_result(key,
    result)`` is called as each task finishes (not for results loaded from ``out``). A task returning a non-dict
    or a non-finite number stops the sweep with ValueError (nothing of it is written).

    Raises:
        SweepConfigError: ``out`` holds results of another configuration, or task files without a manifest.
    """
    from tqdm.auto import tqdm

    bad = [k for k in tasks if not k or "/" in k or k.startswith(".") or k + ".json" == MANIFEST]
    if bad:
        raise ValueError(f"task keys must be non-empty file names, got {bad[:3]}")
    done: dict[str, dict] = {}
    folder = Path(out) if out is not None else None
    manifest = None
    if folder is not None:
        manifest = _open_folder(folder, task_config(fn, tasks), overwrite)
        for key in tasks:
            path = folder / f"{key}.json"
            if path.is_file():
                result = _load_task(path, manifest["result_fields"])
                if result is not None:
                    done[key] = result
    todo = {k: v for k, v in tasks.items() if k not in done}
    own = executor is None
    executor = get_executor(None) if executor is None else executor
    bar = tqdm(total=len(tasks), initial=len(done), desc=f"{desc} ({executor.name})", disable=not progress)
    previous = _sigterm_raises()
    try:
        for key, result in executor.imap(fn, todo):
            if not isinstance(result, dict):
                raise ValueError(f"task {key} returned {type(result).__name__}, not a dict")
            check_finite_json(result, f"task {key}: result")
            if folder is not None:
                if manifest["result_fields"] is None:
                    manifest["result_fields"] = sorted(result)
                    write_json(folder / MANIFEST, manifest)
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
