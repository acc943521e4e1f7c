"""The grid's geometry: the checkerboard colouring, sums over the 4 neighbours of every pixel, and bands of rows.

Large grids are updated in bands of rows, each computed from its rows plus one halo row above and below: every
temporary then holds about BAND_ELEMENTS numbers. Allocating arrays of tens of MB per operation costs page faults
and cache misses that make the cost grow faster than the pixel count (benchmarks/grid_mrf_bench.py).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch

__all__ = ["checkerboard", "neighbour_sum", "halo_sum", "degrees", "Band", "bands", "BAND_ELEMENTS"]

BAND_ELEMENTS = 1 << 19


class Band(NamedTuple):
    """Rows r0:r1 of the grid and their halo a:b (one row more on each side where the grid has one)."""

    r0: int
    r1: int
    a: int
    b: int


def bands(H: int, per_row: int) -> list[Band]:
    """Consecutive bands covering rows 0..H, each of about BAND_ELEMENTS / per_row rows (at least 8); per_row is
    the number of values one row holds in the caller's largest temporary (K W, times the chains)."""
    B = max(8, BAND_ELEMENTS // max(1, per_row))
    return [Band(r0, min(H, r0 + B), max(0, r0 - 1), min(H, r0 + B + 1)) for r0 in range(0, H, B)]


def halo_sum(F: torch.Tensor, band: Band, H: int) -> torch.Tensor:
    """Sum over the 4 neighbours of every pixel of rows r0:r1, from F (..., b - a, W) given on the band's rows with
    their halo (rows on the last two dimensions); zero beyond the border. Returns (..., r1 - r0, W)."""
    P = torch.nn.functional.pad(F, (1, 1, int(band.r0 == 0), int(band.r1 == H)))
    return P[..., :-2, 1:-1] + P[..., 2:, 1:-1] + P[..., 1:-1, :-2] + P[..., 1:-1, 2:]


def checkerboard(H: int, W: int, device: Any = "cpu") -> torch.Tensor:
    """(H, W) bool, True on the "black" pixels ((i + j) even). Pixels of one colour share no edge. (Cached: do not
    modify the result.)"""
    return _checkerboard(H, W, str(device))


@functools.lru_cache(maxsize=64)
def _checkerboard(H: int, W: int, device: str) -> torch.Tensor:
    i = torch.arange(H, device=device)[:, None]
    j = torch.arange(W, device=device)[None, :]
    return (i + j) % 2 == 0


def neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """The sum over the 4 neighbours of every pixel: v (..., H, W) -> (..., H, W), zero beyond the border."""
    H = v.shape[-2]
    return halo_sum(v, Band(0, H, 0, H), H)


def degrees(H: int, W: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(H, W) the number of neighbours of every pixel."""
    return neighbour_sum(torch.ones(H, W, dtype=dtype))
