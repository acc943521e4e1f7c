"""Grid data: the node log-potentials phi (H, W, K) of a grid MRF, from a noisy label image or a table, validated.
(models/grid/model.py holds the model.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.data import Data

__all__ = ["GridData", "as_grid_data"]


@dataclass(frozen=True, eq=False)
class GridData(Data):
    """A grid's node log-potentials phi (H, W, K) float; the observed label image x (H, W) int64 when phi comes from
    one (denoising), and the clean image (H, W) when it is known (to score a denoising)."""

    phi: torch.Tensor
    x: torch.Tensor | None = None
    clean: torch.Tensor | None = None
    name: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    _main = "phi"

    @property
    def phi_cf(self) -> torch.Tensor:
        """phi channel-first, (K, H W) contiguous (the layout of the fast updates: reductions over K are cheap)."""
        if "phi_cf" not in self._cache:
            H, W, K = self.phi.shape
            self._cache["phi_cf"] = self.phi.permute(2, 0, 1).reshape(K, H * W).contiguous()
        return self._cache["phi_cf"]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.phi.shape[0]), int(self.phi.shape[1])

    @property
    def K(self) -> int:
        return int(self.phi.shape[2])

    def __repr__(self) -> str:
        H, W = self.shape
        return f"GridData({self.name or 'grid'}: {H} x {W}, K={self.K}, dtype={self.dtype})"


def _label_image(x: Any, K: int, arg: str) -> torch.Tensor:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"{arg}: expected a non-empty (H, W) label image, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{arg}: labels must be integers 0..{K - 1}, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr) | (arr != np.round(arr)))[0])
        raise ValueError(f"{arg}: labels must be integers 0..{K - 1}, found {arr[bad].item()!r} at {bad}")
    if arr.min() < 0 or arr.max() > K - 1:
        bad = tuple(int(i) for i in np.argwhere((arr < 0) | (arr > K - 1))[0])
        raise ValueError(f"{arg}: labels must be in 0..{K - 1}, found {arr[bad].item()!r} at {bad}")
    return torch.as_tensor(arr.astype(np.int64))


def as_grid_data(data: Any, K: int, *, node_strength: float = 10.0, dtype: torch.dtype = torch.float64,
                 clean: Any = None, name: str = "") -> GridData:
    """A GridData from: a GridData; an (H, W) integer label image x (phi = node_strength [x = k]); an (H, W, K) table
    of node log-potentials; or a dict {"x": ..., "clean": ...} / {"phi": ...}. Raises ValueError naming the problem
    (labels outside 0..K-1 or not integers, NaN or infinite potentials, wrong shapes, an empty grid)."""
    if isinstance(data, GridData):
        if data.K != K:
            raise ValueError(f"data: the node table has K={data.K} labels, the model K={K}")
        return data if data.dtype == dtype else data.to(dtype=dtype)
    if isinstance(data, dict):
        clean = data.get("clean", clean)
        name = data.get("name", name)
        data = data["phi"] if "phi" in data else data["x"]
    arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    clean_t = None if clean is None else _label_image(clean, K, "clean")
    if arr.ndim == 3:
        if arr.shape[2] != K or 0 in arr.shape:
            raise ValueError(f"data: a node table must be (H, W, K={K}) and non-empty, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"data: node potentials must be finite, found {arr[bad].item()!r} at {bad}")
        phi, x = torch.as_tensor(arr, dtype=dtype), None
    else:
        x = _label_image(arr, K, "data")
        phi = node_strength * torch.nn.functional.one_hot(x, K).to(dtype)
    if clean_t is not None and tuple(clean_t.shape) != tuple(phi.shape[:2]):
        raise ValueError(f"clean: shape {tuple(clean_t.shape)} does not match the grid {tuple(phi.shape[:2])}")
    return GridData(phi, x, clean_t, name)
