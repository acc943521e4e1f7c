"""Point-estimate recommenders on a list of ratings (models.data.RatingData), the baselines Gaussian MF is
measured against: biased SGD matrix factorisation (Funk 2006, as in Surprise's SVD) and sparse ridge ALS
(optionally ALS-WR's count-weighted ridge, Zhou et al. 2008) with its penalty tuned on a validation split.

Notation: mu the global mean, b_i / c_j user / item biases, p_i / q_j (K,) factors,
    rhat_ij = mu + b_i + c_j + p_i . q_j   (biased SGD),   rhat_ij = mu + u_i . v_j   (ALS).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from inference.assemble import check_positive_int
from models.data import RatingData, as_rating_data, gram_rhs

__all__ = ["RatingModel", "funk_svd", "als_sparse", "tune_als"]


class RatingModel(NamedTuple):
    """A fitted point-estimate recommender: mu, user biases b (N,), item biases c (M,), P (N, K), Q (M, K), and the
    training RMSE after each epoch/iteration."""

    mu: float
    b: np.ndarray
    c: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    trace: np.ndarray

    def predict(self, rows, cols, clip: tuple[float, float] | None = None) -> np.ndarray:
        from models.data import check_index

        rows, cols = check_index(rows, len(self.P), "rows"), check_index(cols, len(self.Q), "cols")
        out = self.mu + self.b[rows] + self.c[cols] + np.einsum("nk,nk->n", self.P[rows], self.Q[cols])
        return np.clip(out, *clip) if clip is not None else out

    def rmse(self, data: RatingData, clip: tuple[float, float] | None = None) -> float:
        pred = self.predict(data.rows.numpy(), data.cols.numpy(), clip)
        return float(np.sqrt(np.mean((pred - data.values.numpy()) ** 2)))


def _check_common(K, lr_or_lam, name):
    check_positive_int("K", K)
    if not (isinstance(lr_or_lam, (int, float)) and np.isfinite(lr_or_lam) and lr_or_lam > 0):
        raise ValueError(f"{name} must be a positive finite number, got {lr_or_lam!r}")


def funk_svd(data, K: int = 100, *, epochs: int = 20, lr: float = 0.005, reg: float = 0.02, init_sd: float = 0.1,
             seed: int = 0) -> RatingModel:
    """Biased SGD matrix factorisation, Surprise's SVD defaults (K=100, 20 epochs, lr 0.005, reg 0.02, factors
    N(0, 0.1^2), biases 0). Each epoch visits the ratings in the stored (row-major) order; per rating:
        e = r - rhat;  b_i += lr (e - reg b_i);  c_j += lr (e - reg c_j);
        p_i += lr (e q_j - reg p_i);  q_j += lr (e p_i - reg q_j)   (both with the old p_i, q_j).
    Sequential by definition (a Python loop over ratings: about 10 s per MovieLens fold)."""
    data = as_rating_data(data)
    _check_common(K, lr, "lr")
    check_positive_int("epochs", epochs)
    N, M = data.shape
    rng = np.random.default_rng(seed)
    P, Q = init_sd * rng.standard_normal((N, K)), init_sd * rng.standard_normal((M, K))
    b, c = np.zeros(N), np.zeros(M)
    rows, cols, vals = data.rows.tolist(), data.cols.tolist(), data.values.tolist()
    mu = float(np.mean(vals))
    trace = []
    for _ in range(epochs):
        for i, j, r in zip(rows, cols, vals):
            p, q = P[i], Q[j]
            e = r - (mu + b[i] + c[j] + p @ q)
            b[i] += lr * (e - reg * b[i])
            c[j] += lr * (e - reg * c[j])
            P[i], Q[j] = p + lr * (e * q - reg * p), q + lr * (e * p - reg * q)
        trace.append(RatingModel(mu, b, c, P, Q, np.array([])).rmse(data))
    return RatingModel(mu, b, c, P, Q, np.array(trace))


def als_sparse(data, K: int, *, lam: float = 0.05, weighted: bool = True, biases: bool = True, iters: int = 20,
               seed: int = 0, center: bool = True, init: str = "normal") -> RatingModel:
    """Ridge ALS on the observed ratings (minus the global mean mu when ``center``), every row solved at once
    (batched Cholesky); the one ALS of inferlab (the course lab's ``als`` calls it):
        (u_i, b_i) = argmin sum_{j in Omega_i} (r_ij - mu - c_j - b_i - u_i . v_j)^2 + lam_i (|u_i|^2 + b_i^2)
                   = (sum_j w_j w_j^T + lam_i I)^-1 sum_j (r_ij - mu - c_j) w_j,  w_j = (v_j, 1),
    then (v_j, c_j) symmetrically; lam_i = lam |Omega_i| when ``weighted`` (ALS-WR), lam otherwise; without
    ``biases`` b = c = 0 and w_j = v_j. V starts at 0.1 N(0, 1) (init="normal") or U(0, 1) (init="uniform", the
    lecture's). The trace holds the training RMSE after each sweep. O(n K^2) per sweep."""
    data = as_rating_data(data)
    _check_common(K, lam, "lam")
    check_positive_int("iters", iters)
    if init not in ("normal", "uniform"):
        raise ValueError(f"init must be 'normal' or 'uniform', got {init!r}")
    N, M = data.shape
    g = torch.Generator().manual_seed(seed)
    mu = float(data.values.mean()) if center else 0.0
    resid = data.values - mu
    counts = {"U": torch.bincount(data.rows, minlength=N).to(data.dtype),
              "V": torch.bincount(data.cols, minlength=M).to(data.dtype)}
    eye = torch.eye(K + biases, dtype=data.dtype)
    if init == "normal":
        V = 0.1 * torch.randn(M, K, generator=g, dtype=data.dtype)
    else:
        V = torch.rand(M, K, generator=g, dtype=data.dtype)
    b, c = torch.zeros(N, dtype=data.dtype), torch.zeros(M, dtype=data.dtype)

    def solve(side, F_other, other_bias, own_index):
        W = torch.cat([F_other, torch.ones(len(F_other), 1, dtype=data.dtype)], 1) if biases else F_other
        gram, rhs = gram_rhs(data, side, W, resid - other_bias[own_index])
        lam_i = lam * counts[side].clamp_min(1.0) if weighted else torch.full_like(counts[side], lam)
        sol = torch.cholesky_solve(rhs[..., None], torch.linalg.cholesky(gram + lam_i[:, None, None] * eye))[..., 0]
        return (sol[:, :K], sol[:, K]) if biases else (sol, torch.zeros(len(sol), dtype=data.dtype))

    trace = []
    for _ in range(iters):
        U, b = solve("U", V, c, data.cols)
        V, c = solve("V", U, b, data.rows)
        pred = b[data.rows] + c[data.cols] + (U[data.rows] * V[data.cols]).sum(-1)
        trace.append(float(torch.sqrt(((pred - resid) ** 2).mean())))
    return RatingModel(mu, b.numpy(), c.numpy(), U.numpy(), V.numpy(), np.array(trace))


def tune_als(data, K: int, *, lams=(0.03, 0.05, 0.08, 0.12, 0.2, 0.3), weighted: bool = True, biases: bool = True,
             validation_fraction: float = 0.1, iters: int = 20, seed: int = 0,
             clip: tuple[float, float] | None = None) -> tuple[float, dict[float, float]]:
    """Choose ALS's penalty by validation RMSE on a random ``validation_fraction`` of the training ratings (the
    test set is never seen). Returns (best lam, {lam: validation RMSE})."""
    data = as_rating_data(data)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    k = int(round(validation_fraction * len(data)))

    fit_part, valid = data.subset(perm[k:]), data.subset(perm[:k])
    scores = {float(lam): als_sparse(fit_part, K, lam=lam, weighted=weighted, biases=biases, iters=iters, seed=seed).rmse(valid, clip)
              for lam in lams}
    return min(scores, key=scores.get), scores
