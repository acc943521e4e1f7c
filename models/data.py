"""Typed data containers shared by the models, and the one place where user input is validated.

Notation: N rows (users), M columns (items), nnz stored nonzero entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["CountMatrix", "as_count_matrix", "csr_index"]


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
class CountMatrix:
    """A sparse N x M matrix of non-negative integer counts, stored as its nonzeros in row-major order.

    Attributes:
        rows: (nnz,) int64 row index of each nonzero, sorted row-major with ``cols``.
        cols: (nnz,) int64 column index of each nonzero.
        values: (nnz,) positive integer counts (float dtype, float64 by default).
        shape: (N, M).
        row_labels: (N,) labels of the rows (e.g. UserID), or None.
        col_labels: (M,) labels of the columns (e.g. ItemID), or None.
        col_names: (M,) human-readable column names (e.g. artist names), or None.
        name: a short description used in reports.

    Zero cells are not stored but are observed zeros: the Poisson likelihood covers all N x M cells.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int]
    row_labels: np.ndarray | None = None
    col_labels: np.ndarray | None = None
    col_names: np.ndarray | None = None
    name: str = ""
    _csr: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def total(self) -> float:
        """sum of all counts."""
        return float(self.values.sum())

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def csr_structure(self) -> dict[str, torch.Tensor]:
        """Index arrays for sparse products (see :func:`csr_index`), computed once per matrix."""
        if "crow" not in self._csr:
            self._csr.update(csr_index(self.rows, self.cols, self.shape))
        return self._csr

    def log_factorial_sum(self) -> torch.Tensor:
        """sum_nm log(x_nm!) (0-d tensor), computed once per matrix."""
        if "log_factorial_sum" not in self._csr:
            self._csr["log_factorial_sum"] = torch.lgamma(self.values + 1).sum()
        return self._csr["log_factorial_sum"]

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> CountMatrix:
        """A copy on another torch device and/or with another float dtype for the counts."""
        return CountMatrix(
            self.rows.to(device), self.cols.to(device), self.values.to(device=device, dtype=dtype),
            self.shape, self.row_labels, self.col_labels, self.col_names, self.name)

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
            parts.append(CountMatrix(self.rows[keep], self.cols[keep], v[keep], self.shape,
                                     self.row_labels, self.col_labels, self.col_names, self.name))
        return parts[0], parts[1]

    def __repr__(self) -> str:
        N, M = self.shape
        return (f"CountMatrix({self.name or 'counts'}: {N} x {M}, nnz={self.nnz}, "
                f"total={self.total:.0f}, dtype={self.dtype})")


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
    if dtype not in (torch.float64, torch.float32):
        raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    if isinstance(x, CountMatrix):
        return x if (x.dtype == dtype and x.device == torch.device(device)) else x.to(device, dtype)
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
