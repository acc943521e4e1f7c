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

__all__ = ["Data", "SparseMatrix", "CountMatrix", "RatingData", "MixtureData", "as_count_matrix", "as_rating_data",
           "as_mixture_data", "csr_index", "partner_sum", "gram_rhs", "check_dtype"]


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
        """The same entries with new values (same order), e.g. a resimulated data set."""
        return dataclasses.replace(self, values=values, _csr=self._csr)


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

    def __repr__(self) -> str:
        N, M = self.shape
        return (f"CountMatrix({self.name or 'counts'}: {N} x {M}, nnz={self.nnz}, "
                f"total={self.total:.0f}, dtype={self.dtype})")


@dataclass(frozen=True, eq=False)
class RatingData(SparseMatrix):
    """Observed ratings r_ij, (i, j) in Omega: rows, cols (n,) int64; values (n,) float; shape (N, M). Cells that are
    not stored are unobserved."""

    name: str = ""

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
# Validation of user input


def _check_counts(values: np.ndarray, arg: str) -> None:
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


def as_count_matrix(x: Any, *, shape: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64,
                    device: str | torch.device = "cpu", name: str = "", arg: str = "data") -> CountMatrix:
    """Coerce user input into a validated :class:`CountMatrix`.

    Args:
        x: a CountMatrix; a dense (N, M) numpy array or torch tensor; a scipy.sparse matrix; or a
            pandas DataFrame in long format with columns (row, col, value) (the first three columns
            are used, rows/cols must be 0-based integer indices, duplicates are summed).
        shape: (N, M), required only for long-format input whose last rows/columns are empty.
        dtype: float dtype of the stored counts (float64 default, float32 opt-in).
        device: torch device.
        name: description for reports.
        arg: the argument name used in error messages.

    Raises:
        TypeError: unsupported input type.
        ValueError: empty data, NaN/inf, negative or non-integer counts, bad shape or indices.
    """
    check_dtype(dtype)
    if isinstance(x, CountMatrix):
        return x if x.matches(dtype, device) else x.to(device, dtype)
    import pandas as pd
    import scipy.sparse as sp

    if isinstance(x, pd.DataFrame):
        if x.shape[1] < 3:
            raise ValueError(f"{arg}: a long-format DataFrame needs columns (row, col, value), got {list(x.columns)}")
        r = x.iloc[:, 0].to_numpy()
        c = x.iloc[:, 1].to_numpy()
        v = x.iloc[:, 2].to_numpy(dtype=np.float64)
        for a, nm in ((r, "row"), (c, "col")):
            if not np.issubdtype(a.dtype, np.integer) or (a.size and a.min() < 0):
                raise ValueError(f"{arg}: {nm} column must hold 0-based non-negative integer indices")
        N = int(r.max()) + 1 if r.size else 0
        M = int(c.max()) + 1 if c.size else 0
        if shape is not None:
            if shape[0] < N or shape[1] < M:
                raise ValueError(f"{arg}: shape {shape} is too small for indices up to ({N - 1}, {M - 1})")
            N, M = shape
        _check_counts(v, arg)
        mat = sp.coo_matrix((v, (r, c)), shape=(N, M)).tocsr()
        mat.sum_duplicates()
    elif sp.issparse(x):
        mat = sp.csr_matrix(x, dtype=np.float64)
        mat.sum_duplicates()
        _check_counts(mat.data, arg)
    elif isinstance(x, (np.ndarray, torch.Tensor, list)):
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim != 2:
            raise ValueError(f"{arg}: expected a 2-D (N, M) count matrix, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{arg}: expected numeric counts, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        _check_counts(arr.ravel(), arg)
        mat = sp.csr_matrix(arr)
    else:
        raise TypeError(f"{arg}: expected a CountMatrix, numpy/torch array, scipy.sparse matrix or "
                        f"long-format pandas DataFrame, got {type(x).__name__}")
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
        (int(mat.shape[0]), int(mat.shape[1])), name=name)


def as_rating_data(x: Any, *, shape: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64,
                   device: str = "cpu", name: str = "", rating_range: tuple[float, float] | None = None) -> RatingData:
    """Ratings from a RatingData, a models.datasets.Ratings (anything with rows, cols, values, shape), or a dense
    array with NaN for unobserved entries (stored sorted row-major).

    Raises ValueError on NaN/inf ratings, indices outside the shape, or empty data; ratings outside
    ``rating_range`` are allowed but warned about."""
    check_dtype(dtype)
    if isinstance(x, RatingData):
        return x if x.matches(dtype, device) else x.to(device, dtype)
    if hasattr(x, "rows") and hasattr(x, "cols") and hasattr(x, "values"):
        rows, cols, values = (np.asarray(getattr(x, a)) for a in ("rows", "cols", "values"))
        shape = tuple(shape or getattr(x, "shape"))
    else:
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"ratings: expected a 2-D matrix (NaN = unobserved), got shape {arr.shape}")
        rows, cols = np.nonzero(~np.isnan(arr))
        values, shape = arr[rows, cols], arr.shape
    if len(values) == 0:
        raise ValueError("ratings: no observed entries")
    if not np.all(np.isfinite(values)):
        raise ValueError("ratings: values must be finite")
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]:
        raise ValueError(f"ratings: indices outside the shape {shape}")
    if rating_range is not None and ((values < rating_range[0]) | (values > rating_range[1])).any():
        warnings.warn(f"ratings outside the declared range {rating_range}", stacklevel=2)
    order = np.lexsort((cols, rows))  # row-major, for the CSR products
    return RatingData(torch.as_tensor(rows[order], dtype=torch.int64, device=device),
                      torch.as_tensor(cols[order], dtype=torch.int64, device=device),
                      torch.as_tensor(values[order], dtype=dtype, device=device), (int(shape[0]), int(shape[1])), name)


def as_mixture_data(X: Any, *, zero_is_missing: bool = False, dtype: torch.dtype = torch.float64,
                    device: str = "cpu", name: str = "") -> MixtureData:
    """Validate (n, d) points; NaN marks a missing entry (and 0 too with ``zero_is_missing``, as in the
    course's Netflix files). Raises ValueError for a wrong shape, inf, empty data or a row with nothing observed."""
    check_dtype(dtype)
    if isinstance(X, MixtureData):
        return X if X.matches(dtype, device) else X.to(device, dtype)
    arr = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"X must be a non-empty (n, d) matrix, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("X must not contain inf")
    mask = ~np.isnan(arr)
    if zero_is_missing:
        mask &= arr != 0
    if not mask.any(1).all():
        raise ValueError(f"row {int(np.flatnonzero(~mask.any(1))[0])} of X has no observed entry")
    return MixtureData(torch.as_tensor(np.where(mask, arr, 0.0), dtype=dtype, device=device),
                       torch.as_tensor(mask, device=device), name)
