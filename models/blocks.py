"""Row-block access to a sparse matrix (counts or ratings) in memory or memory-mapped from disk, for the closed-form
stochastic VI of any model (inference/stochastic.py): a minibatch of rows is read as a small sparse matrix of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RowBlocks"]


class RowBlocks:
    """A sparse matrix as compressed sparse rows: indptr (N + 1,), cols (nnz,), values (nnz,), NumPy arrays or
    memory maps.

    ``RowBlocks.from_matrix(data)`` wraps a CountMatrix or RatingData (any models.data.SparseMatrix);
    ``RowBlocks.save(folder, indptr, cols, values, shape)`` writes
    the three arrays (``.npy``) and ``shape.json``; ``RowBlocks.open(folder)`` maps them without reading them, so a
    matrix larger than memory is read one batch of rows at a time."""

    def __init__(self, indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
                 dtype: torch.dtype = torch.float64) -> None:
        N, M = shape
        if len(indptr) != N + 1 or len(cols) != len(values) or int(indptr[-1]) != len(values):
            raise ValueError(f"indptr must have N + 1 = {N + 1} entries ending at nnz = {len(values)}; got "
                             f"{len(indptr)} entries ending at {int(indptr[-1])}, {len(cols)} cols")
        self.indptr, self.cols, self.values, self.shape, self.dtype = indptr, cols, values, (int(N), int(M)), dtype

    @classmethod
    def from_matrix(cls, data: Any) -> RowBlocks:
        """A CountMatrix or RatingData (entries row-major) as row blocks, in memory."""
        s = data.csr_structure()
        return cls(s["crow"].cpu().numpy(), data.cols.cpu().numpy(), data.values.cpu().numpy(), data.shape,
                   data.dtype)

    from_counts = from_matrix

    @staticmethod
    def save(folder: str | Path, indptr: np.ndarray, cols: np.ndarray, values: np.ndarray,
             shape: tuple[int, int]) -> Path:
        """Write CSR arrays to ``folder`` (indptr.npy int64, cols.npy int32/int64, values.npy float, shape.json)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in (("indptr", indptr), ("cols", cols), ("values", values)):
            np.save(folder / f"{name}.npy", np.asarray(arr))
        (folder / "shape.json").write_text(json.dumps({"shape": [int(shape[0]), int(shape[1])]}))
        return folder

    @classmethod
    def open(cls, folder: str | Path, dtype: torch.dtype = torch.float64) -> RowBlocks:
        """Memory-map the arrays written by :meth:`save` (nothing is read until a block is asked for)."""
        folder = Path(folder)
        shape = tuple(json.loads((folder / "shape.json").read_text())["shape"])
        arrays = [np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("indptr", "cols", "values")]
        return cls(*arrays, shape, dtype)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def block(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The nonzeros of ``rows`` (B,): (position in ``rows`` (nnz_B,), column (nnz_B,), count (nnz_B,))."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = np.asarray(self.indptr[rows], dtype=np.int64)
        lens = np.asarray(self.indptr[rows + 1], dtype=np.int64) - starts
        pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        local = np.repeat(np.arange(len(rows)), lens)
        return (torch.from_numpy(local), torch.from_numpy(np.asarray(self.cols[pos], dtype=np.int64)),
                torch.as_tensor(np.asarray(self.values[pos]), dtype=self.dtype))

    def counts(self, rows: np.ndarray) -> Any:
        """The nonzeros of ``rows`` (B,) as a CountMatrix of shape (B, M) (row i is rows[i]; ``rows`` sorted, so the
        entries stay row-major), for the model's O(nnz K) sparse-product allocation."""
        from models.data import CountMatrix

        local, cols, values = self.block(rows)
        return CountMatrix(local, cols, values, (len(rows), self.shape[1]))

    def ratings(self, rows: np.ndarray) -> Any:
        """The stored entries of ``rows`` (B,) as RatingData of shape (B, M) (row i is rows[i]; ``rows`` sorted)."""
        from models.data import RatingData

        local, cols, values = self.block(rows)
        return RatingData(local, cols, values, (len(rows), self.shape[1]))

    def value_sum(self, rows_per_block: int = 65_536) -> float:
        """The sum of the stored values, in one pass (a training mean without loading the matrix)."""
        return float(sum(np.asarray(self.values[int(self.indptr[a]):int(self.indptr[b])], dtype=np.float64).sum()
                         for a, b in self.ranges(rows_per_block)))

    def ranges(self, rows_per_block: int):
        """Consecutive row ranges [start, stop) covering every row (for passes over all the data)."""
        N = self.shape[0]
        return [(i, min(i + rows_per_block, N)) for i in range(0, N, rows_per_block)]

    def totals(self, rows_per_block: int = 65_536) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Row totals (N,), column totals (M,) and sum of log x! in one pass."""
        N, M = self.shape
        row_total = np.zeros(N)
        col_total = np.zeros(M)
        log_fact = 0.0
        for a, b in self.ranges(rows_per_block):
            lo, hi = int(self.indptr[a]), int(self.indptr[b])
            v = np.array(self.values[lo:hi], dtype=np.float64)  # (a copy: memory-mapped slices are read-only)
            lens = np.diff(np.asarray(self.indptr[a:b + 1], dtype=np.int64))
            row_total[a:b] = np.bincount(np.repeat(np.arange(b - a), lens), weights=v, minlength=b - a)
            col_total += np.bincount(np.asarray(self.cols[lo:hi]), weights=v, minlength=M)
            log_fact += float(torch.lgamma(torch.from_numpy(v) + 1).sum())
        return torch.as_tensor(row_total, dtype=self.dtype), torch.as_tensor(col_total, dtype=self.dtype), log_fact
