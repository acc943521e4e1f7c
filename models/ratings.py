"""Observed ratings (a sparse list of (i, j, r)) and the per-row sparse sums every Gaussian MF update needs.

Notation: N rows (users), M columns (items); Omega the observed (i, j), n = |Omega|; Omega_i the columns rated
by row i. Ratings are stored sorted row-major so that CSR products sum over Omega_i without a Python loop.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.data import csr_index

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

__all__ = ["RatingData", "as_rating_data", "gram_rhs", "partner_sum"]


@dataclass(frozen=True, eq=False)
class RatingData:
    """Observed ratings: rows, cols (n,) int64; values (n,) float; shape (N, M)."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int]
    name: str = ""
    _csr: dict = field(default_factory=dict, repr=False, compare=False)

    def csr_structure(self) -> dict[str, torch.Tensor]:
        """CSR pointers of the (row-major sorted) ratings and of their transpose (models.data.csr_index)."""
        if not self._csr:
            self._csr.update(csr_index(self.rows, self.cols, self.shape))
        return self._csr

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __repr__(self) -> str:
        return f"RatingData({self.name or 'ratings'}: {self.shape[0]} x {self.shape[1]}, n={len(self)})"


def as_rating_data(x: Any, *, shape: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64,
                   device: str = "cpu", name: str = "", rating_range: tuple[float, float] | None = None) -> RatingData:
    """Ratings from a RatingData, a models.datasets.Ratings, or a dense array with NaN for unobserved entries
    (stored sorted row-major).

    Raises ValueError on NaN/inf ratings, indices outside the shape, or empty data; ratings outside
    ``rating_range`` are allowed but warned about."""
    if isinstance(x, RatingData):
        return x
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


def partner_sum(data: RatingData, side: str, per_partner: torch.Tensor) -> torch.Tensor:
    """For every row i of ``side`` ("U": users, "V": items), the sum over its rated partners of a per-partner
    array: out[i] = sum_{j in Omega_i} per_partner[j]. per_partner (C, ...) -> (R, ...); one sparse product."""
    s = data.csr_structure()
    N, M = data.shape
    ptr, idx, R, C = (s["crow"], data.cols, N, M) if side == "U" else (s["ccol"], s["rows_t"], M, N)
    flat = per_partner.reshape(C, -1)
    ones = torch.ones(len(data), dtype=flat.dtype, device=flat.device)
    return (torch.sparse_csr_tensor(ptr, idx, ones, (R, C)) @ flat).reshape((R,) + per_partner.shape[1:])




def gram_rhs(data: RatingData, side: str, F_other: torch.Tensor, resid: torch.Tensor):
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
