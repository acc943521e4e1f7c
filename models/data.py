"""Typed data containers on one base, and the one place where user input is validated.

    Data                     base: name, dtype, device, to(device, dtype)
    ├── SparseMatrix         observed entries (rows, cols, values) of an N x M matrix, sorted row-major, with the
    │   │                    CSR index arrays every sparse product needs (computed once per matrix)
    │   ├── CountMatrix      non-negative integer counts; unstored cells are observed zeros (Poisson MF)
    │   └── RatingData       observed ratings; unstored cells are unobserved (Gaussian MF, the baselines)
    └── MixtureData          (n, d) points with a mask of observed coordinates (the Bayesian mixtures)

Notation: N rows (users), M columns (items), nnz or n stored entries; Omega_i the stored columns of row i.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# torch warns that CSR tensors are beta and that invariant checks are off; both are expected here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

__all__ = ["check_index", "ALIASES", "LongTable", "ReaderError", "long_table", "find_column", "check_device", "Data", "SparseMatrix", "CountMatrix", "RatingData", "MixtureData", "as_count_matrix", "as_rating_data",
           "as_mixture_data", "csr_index", "partner_sum", "gram_rhs", "check_dtype"]


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, refused with a clear error when this machine does not have it (torch itself
    raises an AssertionError deep inside the first transfer)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but CUDA is not available here (torch {torch.__version__}); "
                         "use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r} asked for, but MPS is not available here; use --device cpu")
    return dev


def check_index(idx: Any, size: int, arg: str) -> np.ndarray:
    """Cell indices as an int64 array, each in [0, size): a negative index would silently count from the end."""
    arr = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{arg} must hold integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise ValueError(f"{arg}: index {bad} is outside [0, {size})")
    return arr


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float64, torch.float32):
        raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    return dtype


class Data:
    """Base of every data container. A subclass is a frozen dataclass with a ``name`` field and names its main float
    tensor in ``_main`` (its dtype and device are the container's)."""

    _main = "values"

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self, self._main).dtype

    @property
    def device(self) -> torch.device:
        return getattr(self, self._main).device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        """A copy on another torch device and/or with another float dtype (index and mask tensors keep theirs)."""
        changes = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor) and f.init:
                changes[f.name] = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
        if "_csr" in {f.name for f in dataclasses.fields(self)}:
            changes["_csr"] = {}
        return dataclasses.replace(self, **changes)

    def matches(self, dtype: torch.dtype, device: str | torch.device) -> bool:
        return self.dtype == dtype and self.device == torch.device(device)


# ---------------------------------------------------------------------------------------------------
# Sparse matrices


def csr_index(rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Index arrays for sparse products over entries sorted row-major.

    Returns ``crow`` (N+1,) CSR row pointers; ``ccol`` (M+1,) pointers of the transposed (column-major)
    layout; ``perm`` (nnz,) the permutation from row-major to column-major order; ``rows_t`` (nnz,) the row
    indices in column-major order.
    """
    N, M = shape
    crow = torch.zeros(N + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=N).cumsum(0)
    perm = torch.argsort(cols * N + rows)
    ccol = torch.zeros(M + 1, dtype=torch.int64, device=rows.device)
    ccol[1:] = torch.bincount(cols, minlength=M).cumsum(0)
    return {"crow": crow, "ccol": ccol, "perm": perm, "rows_t": rows[perm].contiguous()}


PERMUTATION_MAX = 2**24


def sample_indices(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``min(k, n)`` distinct indices from range(n), uniformly, in O(k) memory and time for large n.

    Up to PERMUTATION_MAX the first k of ``torch.randperm(n)`` (as earlier versions drew them, so tracked cells
    stay the same); above it, uniform draws with the repeats dropped in order of first appearance (a full
    permutation of N x M cells at scale would take gigabytes)."""
    k = min(int(k), int(n))
    if n <= PERMUTATION_MAX:
        return torch.randperm(n, generator=generator)[:k]
    picked: dict[int, None] = {}
    while len(picked) < k:
        picked.update(dict.fromkeys(torch.randint(n, (k - len(picked),), generator=generator).tolist()))
    return torch.tensor(list(picked), dtype=torch.int64)


# caches of SparseMatrix._csr that depend on the pattern of stored cells only (kept by with_values)
PATTERN_CACHES = ("invariant_cells",)


@dataclass(frozen=True, eq=False)
class SparseMatrix(Data):
    """Stored entries of an N x M matrix: rows, cols (nnz,) int64 sorted row-major; values (nnz,) float; shape (N, M)."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int]
    _csr: dict = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def __len__(self) -> int:
        return self.nnz

    def csr_structure(self) -> dict[str, torch.Tensor]:
        """Index arrays for sparse products (see :func:`csr_index`), computed once per matrix."""
        if "crow" not in self._csr:
            self._csr.update(csr_index(self.rows, self.cols, self.shape))
        return self._csr

    def subset(self, idx: torch.Tensor):
        """The entries at positions ``idx`` (sorted, so the row-major order is kept), same shape and labels."""
        idx = idx.sort().values
        return dataclasses.replace(self, rows=self.rows[idx], cols=self.cols[idx], values=self.values[idx], _csr={})

    def with_values(self, values: torch.Tensor):
        """The same entries with new values (same order), e.g. a resimulated data set. It shares the cached index
        arrays of the pattern (csr_structure, and any cache keyed by a tuple whose first item is in
        ``PATTERN_CACHES``); what is cached of the values (margins, sum of log x!) is computed afresh."""
        pattern = self.csr_structure()
        keep = {k: v for k, v in pattern.items()
                if k in ("crow", "ccol", "perm", "rows_t") or (isinstance(k, tuple) and k[0] in PATTERN_CACHES)}
        return dataclasses.replace(self, values=values, _csr=keep)


def partner_sum(data: SparseMatrix, side: str, per_partner: torch.Tensor) -> torch.Tensor:
    """For every row i of ``side`` ("U": matrix rows, "V": matrix columns), the sum over its stored partners of a
    per-partner array: out[i] = sum_{j in Omega_i} per_partner[j]. per_partner (C, ...) -> (R, ...); one sparse
    product."""
    s = data.csr_structure()
    N, M = data.shape
    ptr, idx, R, C = (s["crow"], data.cols, N, M) if side == "U" else (s["ccol"], s["rows_t"], M, N)
    flat = per_partner.reshape(C, -1)
    ones = torch.ones(len(data), dtype=flat.dtype, device=flat.device)
    return (torch.sparse_csr_tensor(ptr, idx, ones, (R, C)) @ flat).reshape((R,) + per_partner.shape[1:])


def gram_rhs(data: SparseMatrix, side: str, F_other: torch.Tensor, resid: torch.Tensor):
    """For every row i of the side being updated: sum_{j in Omega_i} f_j f_j^T (R, K, K) and
    sum_j resid_ij f_j (R, K), with f the other side's factors and resid (n,) in the stored (row-major) order.
    The outer products f_j f_j^T depend on j only, so they are formed once per partner and summed by one
    sparse product: O(n K^2) work, no (n, K, K) temporary."""
    s = data.csr_structure()
    N, M = data.shape
    if side == "U":
        ptr, idx, vals, R, C = s["crow"], data.cols, resid, N, M
    else:
        ptr, idx, vals, R, C = s["ccol"], s["rows_t"], resid[s["perm"]], M, N
    gram = partner_sum(data, side, F_other[:, :, None] * F_other[:, None, :])
    rhs = torch.sparse_csr_tensor(ptr, idx, vals, (R, C)) @ F_other
    return gram, rhs


@dataclass(frozen=True, eq=False)
class CountMatrix(SparseMatrix):
    """A sparse N x M matrix of non-negative integer counts, stored as its nonzeros in row-major order.

    Attributes:
        rows, cols, values, shape: see SparseMatrix (values: positive integer counts, float64 by default).
        row_labels: (N,) labels of the rows (e.g. UserID), or None.
        col_labels: (M,) labels of the columns (e.g. ItemID), or None.
        col_names: (M,) human-readable column names (e.g. artist names), or None.
        name: a short description used in reports.

    Zero cells are not stored but are observed zeros: the Poisson likelihood covers all N x M cells.
    """

    row_labels: np.ndarray | None = None
    col_labels: np.ndarray | None = None
    col_names: np.ndarray | None = None
    name: str = ""

    @property
    def total(self) -> float:
        """sum of all counts."""
        return float(self.values.sum())

    def log_factorial_sum(self) -> torch.Tensor:
        """sum_nm log(x_nm!) (0-d tensor), computed once per matrix."""
        if "log_factorial_sum" not in self._csr:
            self._csr["log_factorial_sum"] = torch.lgamma(self.values + 1).sum()
        return self._csr["log_factorial_sum"]

    def margins(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row totals sum_m x_nm (N,) and column totals sum_n x_nm (M,), computed once per matrix."""
        if "margins" not in self._csr:
            N, M = self.shape
            zeros = torch.zeros(N + M, dtype=self.dtype, device=self.device)
            self._csr["margins"] = (zeros[:N].index_add(0, self.rows, self.values),
                                    zeros[N:].index_add(0, self.cols, self.values))
        return self._csr["margins"]

    def to_dense(self) -> torch.Tensor:
        """(N, M) dense tensor of counts (for small matrices and tests)."""
        X = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        X[self.rows, self.cols] = self.values
        return X

    def thin(self, test_fraction: float, generator: torch.Generator) -> tuple[CountMatrix, CountMatrix]:
        """Split the counts by binomial thinning: x = x_train + x_test, x_test ~ Bin(x, test_fraction).

        Under a Poisson model with rates r, x_train ~ Po((1 - f) r) and x_test ~ Po(f r) independently
        (Neufeld et al. 2023, "Data thinning"), so every cell, zeros included, is held out in part
        and the test log-likelihood needs no masking. Both parts keep this matrix's labels.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        x_test = torch.binomial(self.values.cpu(), torch.full_like(self.values.cpu(), test_fraction),
                                generator=generator).to(self.device, self.dtype)
        parts = []
        for v in (self.values - x_test, x_test):
            keep = v > 0
            parts.append(dataclasses.replace(self, rows=self.rows[keep], cols=self.cols[keep], values=v[keep], _csr={}))
        return parts[0], parts[1]

    def hold_out_cells(self, test_fraction: float, generator: torch.Generator) -> tuple[CountMatrix, CountMatrix]:
        """Split the nonzero cells: each goes to the test part, whole, with probability ``test_fraction``; the
        training part reads those cells as zeros. (Unlike ``thin``, the test cells are user-item pairs the fit has
        not seen: what a recommender is measured on.) Both parts keep this matrix's labels."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        test = torch.rand(self.nnz, generator=generator, dtype=torch.float64).to(self.device) < test_fraction
        return tuple(dataclasses.replace(self, rows=self.rows[keep], cols=self.cols[keep], values=self.values[keep],
                                         _csr={}) for keep in (~test, test))

    def __repr__(self) -> str:
        N, M = self.shape
        return (f"CountMatrix({self.name or 'counts'}: {N} x {M}, nnz={self.nnz}, "
                f"total={self.total:.0f}, dtype={self.dtype})")


@dataclass(frozen=True, eq=False)
class RatingData(SparseMatrix):
    """Observed ratings r_ij, (i, j) in Omega: rows, cols (n,) int64; values (n,) float; shape (N, M). Cells that are
    not stored are unobserved."""

    name: str = ""
    row_labels: np.ndarray | None = None
    col_labels: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"RatingData({self.name or 'ratings'}: {self.shape[0]} x {self.shape[1]}, n={len(self)})"


@dataclass(frozen=True, eq=False)
class MixtureData(Data):
    """Points with optional missing coordinates. X: (n, d) float (missing entries hold 0); mask: (n, d) bool,
    True where observed."""

    X: torch.Tensor
    mask: torch.Tensor
    name: str = ""

    _main = "X"

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.X.shape)

    def rows(self, idx: torch.Tensor) -> MixtureData:
        """The points ``idx`` (n',)."""
        return MixtureData(self.X[idx], self.mask[idx], self.name)

    def __repr__(self) -> str:
        n, d = self.shape
        return f"MixtureData({self.name or 'points'}: {n} x {d}, {int((~self.mask).sum())} missing, dtype={self.dtype})"


# ---------------------------------------------------------------------------------------------------
# Long-format tables (columns found by name; models.readers reads them from files)

ALIASES = {
    "row": ("row", "r", "user", "user_id", "userid", "u", "i_row"),
    "col": ("col", "c", "column", "item", "item_id", "itemid", "i", "artist", "artist_id", "movie", "movie_id"),
    "value": ("value", "v", "count", "counts", "n", "rating", "plays", "score", "weight", "x"),
}


class ReaderError(ValueError):
    """A file or table that cannot be read as the data asked for (the message names the file and the column)."""


@dataclass(frozen=True)
class LongTable:
    """Entries of an N x M matrix read from a long-format table: rows, cols (n,) int64 dense indices; values (n,)
    float64; shape (N, M); row_labels (N,), col_labels (M,) the original IDs in index order."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    row_labels: np.ndarray
    col_labels: np.ndarray


def find_column(names: list[str], role: str, given: str | None, source: str) -> str:
    """The column of ``names`` that plays ``role`` ("row", "col" or "value"): ``given`` (checked), else the first
    name matching an alias of ALIASES[role] (case-insensitive)."""
    if given is not None:
        if given not in names:
            raise ReaderError(f"{source}: no column named {given!r} (the {role} column); columns are {names}")
        return given
    lower = {str(n).strip().lower(): n for n in names}
    for alias in ALIASES[role]:
        if alias in lower:
            return lower[alias]
    raise ReaderError(f"{source}: no {role} column; name it one of {', '.join(ALIASES[role][:6])} or pass --columns "
                      f"ROW,COL,VALUE (columns are {names})")


def _looks_numeric(name: Any) -> bool:
    try:
        float(str(name))
        return True
    except ValueError:
        return False


def long_table(df: Any, *, columns: tuple[str, str, str] | None = None, source: str = "data") -> LongTable:
    """The entries of a long-format pandas DataFrame, its columns found by name (see the module docstring).

    Raises ReaderError: a header that looks like a data record, a missing column, IDs that are missing (NaN),
    values that are not numbers."""
    import pandas as pd

    names = list(df.columns)
    if columns is None and names and all(_looks_numeric(n) for n in names):
        raise ReaderError(f"{source}: the first line {','.join(map(str, names))} looks like a record, not a header; "
                          "add a header line (e.g. row,col,value) or declare the file header-less (--no-header: the "
                          "first three columns are then row, col, value)")
    if columns is not None and len(columns) != 3:
        raise ReaderError(f"{source}: columns must name three columns (row, col, value), got {columns!r}")
    r_name, c_name, v_name = (find_column(names, role, columns[i] if columns else None, source)
                              for i, role in enumerate(("row", "col", "value")))
    if len({r_name, c_name, v_name}) < 3:
        raise ReaderError(f"{source}: the row, col and value columns must differ, got {r_name!r}, {c_name!r}, "
                          f"{v_name!r}")
    for name in (r_name, c_name):
        if df[name].isna().any():
            line = int(np.flatnonzero(df[name].isna().to_numpy())[0])
            raise ReaderError(f"{source}: column {name!r} has an empty ID in record {line + 1}")
    try:
        values = pd.to_numeric(df[v_name], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ReaderError(f"{source}: column {v_name!r} must hold numbers ({exc})") from None
    if np.iscomplexobj(df[v_name].to_numpy()):
        raise ReaderError(f"{source}: column {v_name!r} holds complex numbers")
    rows, row_labels = pd.factorize(df[r_name], sort=True)
    cols, col_labels = pd.factorize(df[c_name], sort=True)
    shape = (len(row_labels), len(col_labels))
    return LongTable(rows.astype(np.int64), cols.astype(np.int64), values, shape, np.asarray(row_labels),
                     np.asarray(col_labels))



# ---------------------------------------------------------------------------------------------------
# Validation of user input


MAX_EXACT_COUNT = {torch.float64: 2.0 ** 53, torch.float32: 2.0 ** 24}  # above these, integers are not exact


def _check_counts(values: np.ndarray, arg: str, dtype: torch.dtype = torch.float64) -> None:
    if values.size and not np.all(np.isfinite(values)):
        bad = np.flatnonzero(~np.isfinite(values))[0]
        raise ValueError(f"{arg}: counts must be finite, found {values[bad]!r} at flat index {bad}")
    if values.size and values.min() < 0:
        bad = int(np.argmin(values))
        raise ValueError(f"{arg}: counts must be non-negative, found {values[bad]!r} at flat index {bad}")
    frac = values != np.round(values)
    if frac.any():
        bad = int(np.flatnonzero(frac)[0])
        raise ValueError(f"{arg}: counts must be integers, found {values[bad]!r} at flat index {bad}")
    top = MAX_EXACT_COUNT[dtype]
    if values.size and values.max() > top:
        bad = int(np.argmax(values))
        raise ValueError(f"{arg}: count {values[bad]:.6g} at flat index {bad} is above {top:.0f}, the largest integer "
                         f"{dtype} holds exactly")


def _real_array(x: Any, arg: str) -> np.ndarray:
    """``x`` as a float64 numpy array; complex, object and string input is refused (numpy would drop the imaginary
    part with only a warning)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if np.iscomplexobj(arr):
        raise TypeError(f"{arg}: complex numbers are not data here (got dtype {arr.dtype})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{arg}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _positions(df: Any, shape: tuple[int, int], arg: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A long-format DataFrame read by position (``shape`` given): its row and col columns (found by name) are 0-based
    indices into ``shape``."""
    names = [str(c) for c in df.columns]
    table = long_table(df.set_axis(names, axis=1), source=arg)  # finds the columns by name, checks the values
    idx = []
    for role, labels, codes, size in (("row", table.row_labels, table.rows, shape[0]),
                                      ("col", table.col_labels, table.cols, shape[1])):
        if not np.issubdtype(np.asarray(labels).dtype, np.integer) or (len(labels) and labels.min() < 0):
            raise ValueError(f"{arg}: {role} column must hold 0-based non-negative integer indices when shape is given")
        if len(labels) and labels.max() >= size:
            raise ValueError(f"{arg}: shape {shape} is too small for {role} index {labels.max()}")
        idx.append(np.asarray(labels)[codes].astype(np.int64))
    return idx[0], idx[1], table.values


def as_count_matrix(x: Any, *, shape: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64,
                    device: str | torch.device = "cpu", name: str = "", arg: str = "data") -> CountMatrix:
    """Coerce user input into a validated :class:`CountMatrix`.

    Args:
        x: a CountMatrix; a dense (N, M) numpy array or torch tensor; a scipy.sparse matrix; a
            models.data.LongTable; or a pandas DataFrame in long format whose row, col and value columns are
            found by name (row/user/u, col/item/i, value/count/n: ALIASES above). Without ``shape`` the
            row and col entries are labels, mapped to dense indices in sorted order and kept as row_labels and
            col_labels; with ``shape`` they are 0-based indices. Duplicates are summed.
        shape: (N, M): the size, for indexed long-format input whose last rows/columns are empty.
        dtype: float dtype of the stored counts (float64 default, float32 opt-in).
        device: torch device.
        name: description for reports.
        arg: the argument (or file) name used in error messages.

    Raises:
        TypeError: unsupported input type, complex or non-numeric values.
        ValueError: empty data, NaN/inf, negative or non-integer counts, counts the dtype does not hold exactly, a
            DataFrame without named long-format columns, bad shape or indices.
    """
    check_dtype(dtype)
    check_device(device)
    if isinstance(x, CountMatrix):
        return x if x.matches(dtype, device) else x.to(device, dtype)
    import pandas as pd
    import scipy.sparse as sp

    labels: dict[str, Any] = {}
    if isinstance(x, pd.DataFrame) and shape is None:
        x = long_table(x.set_axis([str(c) for c in x.columns], axis=1), source=arg)
    if isinstance(x, LongTable):
        _check_counts(x.values, arg, dtype)
        mat = sp.coo_matrix((x.values, (x.rows, x.cols)), shape=x.shape).tocsr()
        labels = {"row_labels": x.row_labels, "col_labels": x.col_labels}
    elif isinstance(x, pd.DataFrame):
        r, c, v = _positions(x, shape, arg)
        _check_counts(v, arg, dtype)
        mat = sp.coo_matrix((v, (r, c)), shape=shape).tocsr()
    elif sp.issparse(x):
        if np.iscomplexobj(x.data):
            raise TypeError(f"{arg}: complex numbers are not data here (got dtype {x.dtype})")
        _check_counts(np.asarray(x.data, dtype=np.float64), arg, dtype)  # the stored entries, before any summing
        mat = sp.csr_matrix(x, dtype=np.float64)
    elif isinstance(x, (np.ndarray, torch.Tensor, list)):
        arr = _real_array(x, arg)
        if arr.ndim != 2:
            raise ValueError(f"{arg}: expected a 2-D (N, M) count matrix, got shape {arr.shape}")
        _check_counts(arr.ravel(), arg, dtype)
        mat = sp.csr_matrix(arr)
    else:
        raise TypeError(f"{arg}: expected a CountMatrix, numpy/torch array, scipy.sparse matrix or "
                        f"long-format pandas DataFrame, got {type(x).__name__}")
    mat.sum_duplicates()  # then the summed counts are checked (negatives were refused entry by entry above)
    _check_counts(mat.data, arg, dtype)
    mat.eliminate_zeros()
    mat.sort_indices()
    if shape is not None and tuple(mat.shape) != tuple(shape):
        raise ValueError(f"{arg}: shape mismatch, data is {mat.shape} but shape={shape}")
    if min(mat.shape) == 0 or mat.nnz == 0:
        raise ValueError(f"{arg}: empty count matrix (shape {mat.shape}, {mat.nnz} nonzeros)")
    coo = mat.tocoo()
    return CountMatrix(
        torch.as_tensor(coo.row, dtype=torch.int64, device=device),
        torch.as_tensor(coo.col, dtype=torch.int64, device=device),
        torch.as_tensor(coo.data, dtype=dtype, device=device),
        (int(mat.shape[0]), int(mat.shape[1])), name=name, **labels)


def as_rating_data(x: Any, *, shape: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64,
                   device: str = "cpu", name: str = "", rating_range: tuple[float, float] | None = None,
                   arg: str = "ratings") -> RatingData:
    """Ratings from a RatingData, a models.data.LongTable or models.datasets.Ratings (anything with rows, cols,
    values, shape; labels kept when it has row_labels / col_labels), a long-format DataFrame (columns by name, IDs
    as labels), or a dense array with NaN for unobserved entries (zeros are ratings); stored sorted row-major.

    Raises ValueError on NaN/inf ratings, ratings outside ``rating_range`` (lo, hi), indices outside the shape, or
    empty data; TypeError on complex or non-numeric input. ``arg`` names the input in the messages."""
    check_dtype(dtype)
    check_device(device)
    if isinstance(x, RatingData):
        return x if x.matches(dtype, device) else x.to(device, dtype)
    import pandas as pd

    if isinstance(x, pd.DataFrame):
        x = long_table(x.set_axis([str(c) for c in x.columns], axis=1), source=arg)
    labels: dict[str, Any] = {}
    if hasattr(x, "rows") and hasattr(x, "cols") and hasattr(x, "values"):
        rows, cols = (np.asarray(getattr(x, a)) for a in ("rows", "cols"))
        values = _real_array(getattr(x, "values"), arg)
        shape = tuple(shape or getattr(x, "shape"))
        labels = {k: getattr(x, k) for k in ("row_labels", "col_labels") if getattr(x, k, None) is not None}
    else:
        arr = _real_array(x, arg)
        if arr.ndim != 2:
            raise ValueError(f"{arg}: expected a 2-D matrix (NaN = unobserved), got shape {arr.shape}")
        rows, cols = np.nonzero(~np.isnan(arr))
        values, shape = arr[rows, cols], arr.shape
    if len(values) == 0:
        raise ValueError(f"{arg}: no observed ratings")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{arg}: ratings must be finite, found {values[bad]!r} in entry {bad}")
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]:
        raise ValueError(f"{arg}: indices outside the shape {shape}")
    if rating_range is not None:
        lo, hi = rating_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"rating_range must be finite (lo, hi) with lo < hi, got {rating_range!r}")
        out = (values < lo) | (values > hi)
        if out.any():
            bad = int(np.flatnonzero(out)[0])
            raise ValueError(f"{arg}: rating {values[bad]:g} (row {rows[bad]}, col {cols[bad]}) is outside the "
                             f"declared range {lo:g}..{hi:g}; {int(out.sum())} of {len(values)} ratings are outside")
    order = np.lexsort((cols, rows))  # row-major, for the CSR products
    return RatingData(torch.as_tensor(rows[order], dtype=torch.int64, device=device),
                      torch.as_tensor(cols[order], dtype=torch.int64, device=device),
                      torch.as_tensor(values[order], dtype=dtype, device=device), (int(shape[0]), int(shape[1])), name,
                      **labels)


def as_mixture_data(X: Any, *, zero_is_missing: bool = False, dtype: torch.dtype = torch.float64,
                    device: str = "cpu", name: str = "", arg: str = "X") -> MixtureData:
    """Validate (n, d) points; NaN marks a missing entry (and 0 too with ``zero_is_missing``, as in the
    course's Netflix files). Raises ValueError for a wrong shape, inf, empty data or a row with nothing observed."""
    check_dtype(dtype)
    check_device(device)
    if isinstance(X, MixtureData):
        return X if X.matches(dtype, device) else X.to(device, dtype)
    arr = _real_array(X, arg)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{arg} must be a non-empty (n, d) matrix, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{arg} must not contain inf")
    mask = ~np.isnan(arr)
    if zero_is_missing:
        mask &= arr != 0
    if not mask.any(1).all():
        raise ValueError(f"row {int(np.flatnonzero(~mask.any(1))[0])} of {arg} has no observed entry")
    return MixtureData(torch.as_tensor(np.where(mask, arr, 0.0), dtype=dtype, device=device),
                       torch.as_tensor(mask, device=device), name)
