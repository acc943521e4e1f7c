"""The one atomic-write helper: every file inferlab writes (results, reports, plots, sweep tasks, downloaded data)
goes to a temporary file in the target folder and is renamed into place, so a reader never sees half a file and a
failed write leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "write_text", "write_bytes", "write_json", "digest", "describe_value"]


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the process umask (mkstemp's files are 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on any error it is removed.

    The parent folder is created if needed. The temporary name starts with a dot and keeps the suffix (some
    writers, such as matplotlib, choose the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj))


def _feed(h, obj: Any) -> None:
    """Feed a canonical byte form of ``obj`` to the hash ``h``: arrays and tensors by dtype, shape and bytes; dataclasses
    by type and fields (fields with compare=False, caches, are skipped); mappings by sorted key; scalars by repr."""
    import dataclasses

    import numpy as np

    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor (torch is not imported here for it)
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        h.update(f"ndarray {arr.dtype.str} {arr.shape}|".encode())
        if arr.dtype == object:
            for item in arr.ravel():
                _feed(h, item)
        else:
            h.update(arr.tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        for f in dataclasses.fields(obj):
            if f.compare:
                h.update(f"{f.name}=".encode())
                _feed(h, getattr(obj, f.name))
        h.update(b")")
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[".encode())
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes, np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r}|".encode())
    elif hasattr(obj, "__dict__"):
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
        _feed(h, vars(obj))
    else:
        h.update(f"{type(obj).__qualname__}:{obj!r}|".encode())


def digest(obj: Any) -> str:
    """A content fingerprint (SHA-256, hex) of ``obj``: data containers, models, settings, arrays, nested in dicts and
    lists. Equal content gives the same digest in any process; any changed value, shape or dtype changes it."""
    import hashlib

    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def describe_value(obj: Any, width: int = 120) -> str:
    """A short readable form of a configuration value for manifests and error messages (its repr, cut to ``width``)."""
    text = repr(obj) if not hasattr(obj, "shape") or hasattr(obj, "name") else f"{type(obj).__name__}{tuple(obj.shape)}"
    return text if len(text) <= width else text[: width - 3] + "..."
