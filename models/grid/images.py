"""Label images for denoising: the course's 3 x 3 example, and spirals made in code."""

from __future__ import annotations

import math

import torch

__all__ = ["COURSE_SMALL", "spiral", "add_noise"]

# The course's `small` example (docs/REFERENCE.md section 4): K = 2, the bottom row labelled 1.
COURSE_SMALL = ((0, 0, 0), (0, 0, 0), (1, 1, 1))


def spiral(size: int, K: int = 5, turns: float = 2.0) -> torch.Tensor:
    """(size, size) int64: K interleaved spiral arms. A pixel at radius r in [0, 1] and angle a gets the label
    floor(K * frac(a / 2 pi + turns r))."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    if isinstance(K, bool) or not isinstance(K, int) or K < 2:
        raise ValueError(f"K must be an integer >= 2, got {K!r}")
    c = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    r = torch.sqrt(xx ** 2 + yy ** 2) / math.sqrt(2.0)
    phase = torch.atan2(yy, xx) / (2 * math.pi) + turns * r
    return torch.floor(K * torch.remainder(phase, 1.0)).long().clamp(0, K - 1)


def add_noise(clean: torch.Tensor, K: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """The clean labels with a ``fraction`` of the pixels replaced by a uniform random label (which may equal the
    clean one)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise fraction must be in [0, 1], got {fraction!r}")
    replace = torch.rand(clean.shape, generator=generator, dtype=torch.float64) < fraction
    return torch.where(replace, torch.randint(K, clean.shape, generator=generator), clean)
