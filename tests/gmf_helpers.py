"""Shared fixtures-as-functions for the Gaussian MF tests: a small rating matrix and a random SPD matrix."""

import numpy as np
import torch

from models.gaussian_mf import as_rating_data


def ratings(N=7, M=6, seed=0):
    """Integer ratings 1..5 on an N x M grid, about 40% missing, cell (0, 0) always observed."""
    rng = np.random.default_rng(seed)
    A = rng.integers(1, 6, size=(N, M)).astype(float)
    A[rng.random((N, M)) < 0.4] = np.nan
    A[0, 0] = 4.0
    return as_rating_data(A)


def spd(K, g, scale=1.0):
    """A random well-conditioned K x K symmetric positive-definite matrix."""
    A = torch.randn(K, K, generator=g, dtype=torch.float64)
    return scale * (A @ A.T / K + 0.5 * torch.eye(K, dtype=torch.float64))
