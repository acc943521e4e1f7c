"""Compiled CPU loops for the hot spots of the closed-form sweeps, each a transcription of a torch expression that
stays the reference (and the path on other devices, in float32 and under autograd):

- ``digamma_lgamma(x)`` and ``gamma_log_block``: digamma and log-gamma sharing one recurrence and one logarithm
  (torch computes each on its own, at about 10 ns an element each), with what a CAVI sweep takes of them: E[log t]
  of Gamma factors, their shifted exponentials and the shape terms of the KL divergence;
- ``sparse_allocation``: the expected allocation of Poisson counts, S_nm = A_n . B_m at the nonzeros, then
  sum_m (x_nm / S_nm) B_m per row and sum_n (x_nm / S_nm) A_n per column, in one pass over the rows and one over
  the columns (torch needs a sampled product, two sparse products and five elementwise passes).

The loops are plain C (models/_kernels.c), compiled on first use with the machine's C compiler (``$CC``, else
``cc``) for this machine's processor, and cached under $INFERLAB_CACHE/kernels (default ~/.cache/inferlab), keyed by
the source, the flags, the compiler and the machine: a process loads the library in about a millisecond and
compiles nothing an earlier one compiled (about 0.2 s, once). They are vectorised by the compiler; their rows are
shared among as many OpenMP threads as torch uses (one in a forked child), each row computed by one thread in a
fixed order, so the results do not depend on the number of threads. The logarithms and exponentials are NumPy's
vectorised ones between the passes. Only float64 arrays on the CPU take this path.

INFERLAB_KERNELS chooses: "auto" (default) uses the compiled loops where they can be built and warns once, naming
the compiler's error, where not; "c" insists (an error where they cannot be built); "torch" uses the torch
expressions everywhere (to compare the two).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["mode", "usable", "loaded", "digamma_lgamma", "gamma_log_block", "sparse_allocation"]

_SOURCE = Path(__file__).with_name("_kernels.c")
# -march=native: this machine's vector instructions (the library is cached per machine); 256-bit vectors, which on
# the processors tried beat 512-bit ones on these short (K-long) loops; OpenMP threads where the compiler has
# OpenMP, else (the second set) one thread.
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-std=c99", "-fPIC", "-shared"]
_X86_FLAGS = ["-mprefer-vector-width=256"]
_THREAD_FLAGS = (["-fopenmp"], ["-fopenmp-simd"])
_INT, _I64, _PTR, _F64 = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
_SIGNATURES = {
    "shift_up": [_INT, _I64] + [_PTR] * 4,
    "digamma_lgamma": [_INT, _I64] + [_PTR] * 6,
    "gamma_log_terms": [_INT, _I64, _I64] + [_PTR] * 6 + [_F64] + [_PTR] * 4,
    "allocation_rows": [_INT, _I64, _I64] + [_PTR] * 8,
    "allocation_cols": [_INT, _I64, _I64] + [_PTR] * 7,
}
# A forked child must not start OpenMP threads its parent's runtime already started (GNU OpenMP hangs): after a
# fork, the loops run in one thread, as torch does.
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def mode() -> str:
    """INFERLAB_KERNELS: "auto" (unset), "c" or "torch"."""
    choice = os.environ.get("INFERLAB_KERNELS", "auto")
    if choice not in ("auto", "c", "torch"):
        raise ValueError(f"INFERLAB_KERNELS must be 'auto', 'c' or 'torch', got {choice!r}")
    return choice


def usable(*tensors: Any) -> bool:
    """Whether the compiled loops take these torch tensors: not turned off, built, and every tensor float64 on the
    CPU and outside autograd."""
    import torch

    if mode() == "torch":
        return False
    if not all(t.dtype == torch.float64 and t.device.type == "cpu" and not t.requires_grad for t in tensors):
        return False
    if _library() is None:
        if mode() == "c":  # (the library failed under "auto" earlier in this process)
            raise RuntimeError("INFERLAB_KERNELS=c, but the compiled CAVI loops could not be built in this process "
                               "(see the warning)")
        return False
    return True


def loaded() -> str:
    """What this process computed the hot spots with, for a result's provenance: the compiled library's file name
    (its name is the hash of the source, flags, compiler and machine) once loaded, else "torch"."""
    if mode() == "torch" or _library.cache_info().currsize == 0 or _library() is None:
        return "torch"
    return Path(_library()._name).name


def _machine() -> str:
    """What -march=native depends on: the processor (its flags on Linux) and the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return "|".join([platform.machine(), platform.processor(), flags])


def _threads() -> int:
    """Threads of the loops: torch's setting (torch.set_num_threads governs both), one in a forked child."""
    import torch

    return 1 if _forked else max(1, torch.get_num_threads())


def _compile(compiler: str, flags: list[str], out: Path) -> None:
    subprocess.run([compiler, *flags, "-o", str(out), str(_SOURCE), "-lm"], check=True, capture_output=True,
                   text=True)


def _unavailable(what: str, remedy: str, exc: Exception) -> None:
    """None (the torch path), with a warning; an error under INFERLAB_KERNELS=c."""
    message = (f"the compiled CAVI loops {what}; the torch expressions are used instead (slower, same results). "
               f"{remedy}")
    if mode() == "c":
        raise RuntimeError(f"INFERLAB_KERNELS=c: {message}") from exc
    warnings.warn(message, RuntimeWarning, stacklevel=4)
    return None


@cache
def _library() -> Any:
    """The compiled library (ctypes), built into the cache on first use; None where it cannot be built (with a
    warning, or an error under INFERLAB_KERNELS=c)."""
    compiler = os.environ.get("CC", "cc")
    base = _FLAGS + (_X86_FLAGS if platform.machine().lower() in ("x86_64", "amd64") else [])
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(base).encode(), compiler.encode(), _machine().encode()]))
    folder = Path(os.environ.get("INFERLAB_CACHE", Path.home() / ".cache" / "inferlab")) / "kernels"
    path = folder / f"kernels-{key.hexdigest()[:20]}.so"
    if not path.exists():
        errors = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:  # built aside, then moved into place in one step
                built = Path(tmp) / path.name
                for threads in _THREAD_FLAGS:
                    try:
                        _compile(compiler, base + threads, built)
                        break
                    except subprocess.CalledProcessError as exc:
                        errors.append(exc.stderr.strip())
                else:
                    raise RuntimeError(errors[-1][:300])
                os.replace(built, path)
        except (OSError, RuntimeError) as exc:
            return _unavailable(f"could not be built with {compiler!r} ({str(exc).strip()[:300]})", "Set CC to a C "
                                "compiler, or INFERLAB_KERNELS=torch to silence this.", exc)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return _unavailable(f"in {path} could not be loaded ({exc})", "Delete the file to rebuild it.", exc)
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


# Scratch memory of the calls in each thread, kept between calls up to this size: a fresh large array is new
# pages to the operating system, and their page faults cost more than the loops (about 1,200 a sweep on LastFM).
_KEEP_SCRATCH_BYTES = 1 << 28
_local = threading.local()


def _scratch(count: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """``count`` float64 work arrays of ``shape`` for one call: views of this thread's scratch buffer, each starting
    64 bytes further round a 4 KiB page than the last (arrays that all start at the same place in a page make a loop
    that streams through several of them stall on the processor's 4K aliasing). A call takes its scratch once, and
    returns none of it (copies or fresh arrays only): the next call in this thread overwrites it."""
    size = math.prod(shape)
    stride = -(-size // 512) * 512 + 8  # whole pages of doubles, plus 64 bytes
    need = count * stride
    block = getattr(_local, "block", None)
    if block is None or block.size < need:
        block = np.empty(need)
        if 8 * need <= _KEEP_SCRATCH_BYTES:
            _local.block = block
    return [block[i * stride: i * stride + size].reshape(shape) for i in range(count)]


def _shifted_logs(x: np.ndarray, z: np.ndarray, q: np.ndarray, log_z: np.ndarray, log_p: np.ndarray) -> None:
    """z, q, log z and log p of shift_up (models/_kernels.c) for x (any shape, float64, contiguous), into the given
    arrays of the shape of x."""
    _library().shift_up(_threads(), x.size, _ptr(x), _ptr(z), _ptr(q), _ptr(log_p))
    with np.errstate(divide="ignore"):  # x = 0: log p = -inf (lgamma(0) = inf)
        np.log(z, out=log_z)
        np.log(log_p, out=log_p)


def _float64(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype != np.float64:
        raise TypeError(f"{name} must be float64, got {a.dtype}")
    return np.ascontiguousarray(a)


def _int64(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype != np.int64:
        raise TypeError(f"{name} must be int64, got {a.dtype}")
    return np.ascontiguousarray(a)


def digamma_lgamma(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(digamma(x), lgamma(x)) elementwise for float64 x > 0 (x = 0 gives -inf and inf; x < 0 is not supported), any
    shape. Within 1e-14 of the exact values, relative to max(1, |value|)."""
    x = _float64(x, "x")
    z, q, log_z, log_p, dg, lg = _scratch(6, x.shape)
    _shifted_logs(x, z, q, log_z, log_p)
    _library().digamma_lgamma(_threads(), x.size, _ptr(z), _ptr(q), _ptr(log_z), _ptr(log_p), _ptr(dg), _ptr(lg))
    return dg.copy(), lg.copy()


def gamma_log_block(shape: np.ndarray, log_rate: np.ndarray, a: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For q(t_ik) = Ga(shape_ik, rate_k), float64 shape (n, K) > 0 and log_rate (K,): E[log t] = digamma(shape) -
    log_rate (n, K), A = exp(E[log t] - shift) (n, K) with shift = max_k E[log t] (n,), and per row
    sum_k (shape_ik - a) digamma(shape_ik) - lgamma(shape_ik) (n,) (the shape terms of KL(q || Ga(a, b)))."""
    shape, log_rate = _float64(shape, "shape"), _float64(log_rate, "log_rate")
    n, K = shape.shape
    if log_rate.shape != (K,):
        raise ValueError(f"log_rate must have shape ({K},), got {log_rate.shape}")
    z, q, log_z, log_p, El, El_shifted = _scratch(6, shape.shape)
    _shifted_logs(shape, z, q, log_z, log_p)
    shift, kl_rows = np.empty(n), np.empty(n)
    _library().gamma_log_terms(_threads(), n, K, _ptr(shape), _ptr(z), _ptr(q), _ptr(log_z), _ptr(log_p),
                               _ptr(log_rate), float(a), _ptr(El), _ptr(El_shifted), _ptr(shift), _ptr(kl_rows))
    return El.copy(), np.exp(El_shifted), shift, kl_rows


def sparse_allocation(crow: np.ndarray, cols: np.ndarray, ccol: np.ndarray, rows_t: np.ndarray, perm: np.ndarray,
                      x: np.ndarray, A: np.ndarray, B: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The expected allocation of counts x (nnz,) on a sparse pattern, for positive A (N, K) and B (M, K), float64.

    The pattern in CSR (crow (N + 1,), cols (nnz,)) and CSC (ccol (M + 1,), rows_t (nnz,), perm (nnz,): the k-th
    entry in column-major order is entry perm[k] of the row-major order), int64, as models.data.csr_index gives it.

    Returns:
        c_row (N, K): A_nk sum_m x_nm B_mk / S_nm; c_col (M, K): B_mk sum_n x_nm A_nk / S_nm;
        sum_nm x_nm log S_nm; and min_nm S_nm (inf with no nonzeros), with S_nm = A_n . B_m.
    """
    crow, cols, ccol = _int64(crow, "crow"), _int64(cols, "cols"), _int64(ccol, "ccol")
    rows_t, perm = _int64(rows_t, "rows_t"), _int64(perm, "perm")
    x, A, B = _float64(x, "x"), _float64(A, "A"), _float64(B, "B")
    (N, K), M, nnz = A.shape, B.shape[0], x.size
    if B.shape[1] != K or crow.shape != (N + 1,) or ccol.shape != (M + 1,) or not (
            cols.size == rows_t.size == perm.size == nnz == crow[-1] == ccol[-1]):
        raise ValueError(f"inconsistent pattern: A {A.shape}, B {B.shape}, crow {crow.shape}, ccol {ccol.shape}, "
                         f"{nnz} values")
    lib, threads = _library(), _threads()
    S, ratio = _scratch(2, x.shape)
    c_row, c_col = np.empty_like(A), np.empty_like(B)
    lib.allocation_rows(threads, N, K, _ptr(crow), _ptr(cols), _ptr(x), _ptr(A), _ptr(B), _ptr(S), _ptr(ratio),
                        _ptr(c_row))
    lib.allocation_cols(threads, M, K, _ptr(ccol), _ptr(rows_t), _ptr(perm), _ptr(ratio), _ptr(A), _ptr(B), _ptr(c_col))
    if nnz == 0:
        return c_row, c_col, 0.0, math.inf
    return c_row, c_col, float(np.sum(x * np.log(S))), float(S.min())
