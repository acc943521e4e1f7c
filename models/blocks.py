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
        self.row_labels: np.ndarray | None = None
        self.col_labels: np.ndarray | None = None
        self._totals: tuple[torch.Tensor, torch.Tensor, float] | None = None

    @classmethod
    def from_matrix(cls, data: Any) -> RowBlocks:
        """A CountMatrix or RatingData (entries row-major) as row blocks, in memory."""
        s = data.csr_structure()
        blocks = cls(s["crow"].cpu().numpy(), data.cols.cpu().numpy(), data.values.cpu().numpy(), data.shape,
                     data.dtype)
        blocks.row_labels, blocks.col_labels = getattr(data, "row_labels", None), getattr(data, "col_labels", None)
        return blocks

    @classmethod
    def from_parquet(cls, path: str | Path, folder: str | Path, *, columns: tuple[str, str, str] | None = None,
                     counts: bool = False, batch_records: int = 1_000_000, dtype: torch.dtype = torch.float64
                     ) -> RowBlocks:
        """A long-format Parquet file (row, col, value columns found by name as models.readers finds them, or
        ``columns``) converted to CSR files in ``folder`` and memory-mapped (:meth:`open`), reading
        ``batch_records`` records at a time: memory holds the row and column IDs (O(N + M)) and one batch, never the
        matrix, so a file larger than memory can be fitted by stochastic VI.

        IDs are labels mapped to 0..N-1 and 0..M-1 in sorted order, as the readers map them (kept in the folder as
        row_labels.npy / col_labels.npy, and as ``row_labels`` / ``col_labels``); within a row the entries are
        sorted by column. Three passes over the file: the IDs and each row's number of entries, then the entries
        into place, then a sort within each row (which also finds repeated cells).

        counts: the values are counts (non-negative integers; zeros are dropped, as a CountMatrix stores
            nonzeros only); otherwise any finite numbers (ratings).

        Raises ReaderError (naming the file, the column and the record): a missing column, an empty ID, a value
        that is not a finite number (or not a count), a cell given twice, no records."""
        import pyarrow.parquet as pq

        from models.data import ReaderError, _check_counts
        from models.readers import parquet_columns

        path, folder = Path(path), Path(folder)
        if isinstance(batch_records, bool) or not isinstance(batch_records, int) or batch_records < 1:
            raise ValueError(f"batch_records must be an integer >= 1, got {batch_records!r}")
        names = parquet_columns(path, columns)
        source = str(path)

        def batches():
            """(first record number, row IDs, col IDs, values) of each batch, the values checked."""
            start = 0
            for b in pq.ParquetFile(path).iter_batches(batch_size=batch_records, columns=list(names)):
                ids = []
                for k in range(2):
                    col = b.column(k)
                    if col.null_count:
                        bad = start + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                        raise ReaderError(f"{source}: column {names[k]!r} has an empty ID in record {bad + 1}")
                    ids.append(col.to_numpy(zero_copy_only=False))
                v = b.column(2)
                try:
                    vals = np.asarray(v.to_numpy(zero_copy_only=False), dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise ReaderError(f"{source}: column {names[2]!r} must hold numbers ({exc})") from None
                if not np.all(np.isfinite(vals)):
                    bad = int(np.flatnonzero(~np.isfinite(vals))[0])
                    raise ReaderError(f"{source}: column {names[2]!r} has {float(vals[bad])} in record "
                                      f"{start + bad + 1}")
                if counts:
                    try:
                        _check_counts(vals, f"{source}: column {names[2]!r} (records from {start + 1})")
                    except ValueError as exc:
                        raise ReaderError(str(exc)) from None
                    keep = vals != 0
                    ids, vals = [i[keep] for i in ids], vals[keep]
                if len(vals):
                    yield start, ids[0], ids[1], vals
                start += b.num_rows

        written = [folder / f"{n}.npy" for n in ("cols", "values", "indptr", "row_labels", "col_labels")]
        try:
            (folder / "shape.json").unlink(missing_ok=True)  # (an earlier conversion's marker goes first)
            # pass 1: the IDs, and the number of entries of each row ID
            row_ids, row_n, col_ids = None, None, None
            for _, r, c, _ in batches():
                u, k = np.unique(r, return_counts=True)
                if row_ids is None:
                    row_ids, row_n, col_ids = u, k, np.unique(c)
                    continue
                row_ids, inv = np.unique(np.concatenate([row_ids, u]), return_inverse=True)
                row_n = np.bincount(inv, weights=np.concatenate([row_n, k]),
                                    minlength=len(row_ids)).astype(np.int64)
                col_ids = np.union1d(col_ids, c)
            if row_ids is None or len(row_ids) == 0:
                raise ReaderError(f"{source}: no records" + (" with a nonzero count" if counts else ""))
            N, M, nnz = len(row_ids), len(col_ids), int(row_n.sum())
            indptr = np.zeros(N + 1, dtype=np.int64)
            np.cumsum(row_n, out=indptr[1:])
            # pass 2: every entry into its row's slots, in file order within the row
            folder.mkdir(parents=True, exist_ok=True)
            cols = np.lib.format.open_memmap(folder / "cols.npy", mode="w+", dtype=np.int64, shape=(nnz,))
            values = np.lib.format.open_memmap(folder / "values.npy", mode="w+", dtype=np.float64, shape=(nnz,))
            filled = indptr[:-1].copy()
            for _, r, c, v in batches():
                ri = np.searchsorted(row_ids, r)
                order = np.argsort(ri, kind="stable")
                ri = ri[order]
                first = np.flatnonzero(np.r_[True, ri[1:] != ri[:-1]])
                rank = np.arange(len(ri)) - np.repeat(first, np.diff(np.r_[first, len(ri)]))
                pos = filled[ri] + rank
                cols[pos] = np.searchsorted(col_ids, c[order])
                values[pos] = v[order]
                np.add.at(filled, ri[first], np.diff(np.r_[first, len(ri)]))
            # pass 3: sort each row by column, block by block, and refuse a cell given twice
            lo_row = 0
            while lo_row < N:
                hi_row = int(np.searchsorted(indptr, indptr[lo_row] + batch_records, side="right")) - 1
                hi_row = min(N, max(hi_row, lo_row + 1))
                lo, hi = int(indptr[lo_row]), int(indptr[hi_row])
                local = np.repeat(np.arange(hi_row - lo_row), np.diff(indptr[lo_row:hi_row + 1]))
                cb, vb = np.array(cols[lo:hi]), np.array(values[lo:hi])
                order = np.lexsort((cb, local))
                cb, vb, local = cb[order], vb[order], local[order]
                dup = np.flatnonzero((local[1:] == local[:-1]) & (cb[1:] == cb[:-1]))
                if dup.size:
                    i = dup[0]
                    raise ReaderError(f"{source}: the cell ({names[0]}={row_ids[lo_row + local[i]]}, "
                                      f"{names[1]}={col_ids[cb[i]]}) is given more than once")
                cols[lo:hi], values[lo:hi] = cb, vb
                lo_row = hi_row
            cols.flush(), values.flush()
            del cols, values
            np.save(folder / "indptr.npy", indptr)
            for name, ids in (("row_labels", row_ids), ("col_labels", col_ids)):
                np.save(folder / f"{name}.npy", ids.astype(str) if ids.dtype == object else ids, allow_pickle=False)
            (folder / "shape.json").write_text(json.dumps({"shape": [N, M]}))
        except BaseException:  # nothing half-written is left behind (shape.json, written last, marks a whole folder)
            for f in written:
                f.unlink(missing_ok=True)
            raise
        return cls.open(folder, dtype)

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
        blocks = cls(*arrays, shape, dtype)
        for name in ("row_labels", "col_labels"):  # (written by from_parquet)
            if (folder / f"{name}.npy").is_file():
                setattr(blocks, name, np.load(folder / f"{name}.npy", allow_pickle=False))
        return blocks

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
        """Row totals (N,), column totals (M,) and sum of log x! in one pass, made once per RowBlocks (the
        stochastic-VI start and its ELBO constant both read them; on disk, a pass reads the whole matrix)."""
        if self._totals is None:
            self._totals = self._totals_pass(rows_per_block)
        return self._totals

    def _totals_pass(self, rows_per_block: int) -> tuple[torch.Tensor, torch.Tensor, float]:
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
