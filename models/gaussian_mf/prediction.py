"""What users do with a fitted Gaussian MF: posterior predictive means and sds, held-out RMSE and log predictive
density, and recommendations with their uncertainty. Every function takes an InferenceResult of any method."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributions as td

from models.data import RatingData, check_index

__all__ = ["predict", "recommend", "heldout_scores", "draw_loglik", "sampled_nll", "RunningPredictive"]


def heldout_scores(model: Any, train: RatingData, result: Any, test: RatingData) -> dict[str, float]:
    """Test RMSE of the posterior mean prediction and log predictive density per rating,
    log mean_s N(r_ij; offset + u_i^(s) . v_j^(s), 1 / alpha^(s))."""
    mean, _ = predict(model, train, result, test.rows, test.cols)
    rmse = float(torch.sqrt(((torch.as_tensor(mean) - test.values) ** 2).mean()))
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)
    if "alpha" in result.posterior and model.noise_prior is not None:
        alpha = torch.as_tensor(np.asarray(result.posterior["alpha"])).flatten(0, 1)
    else:
        alpha = torch.full((len(U),), model.alpha, dtype=torch.float64)
    off = model.offset(train)
    lp = torch.stack([td.Normal(off + (u[test.rows] * v[test.cols]).sum(-1), 1 / torch.sqrt(a)).log_prob(test.values)
                      for u, v, a in zip(U, V, alpha)])
    lpd = torch.logsumexp(lp, 0) - math.log(len(U))
    return {"test_rmse": rmse, "heldout_lpd_per_rating": float(lpd.mean())}


def draw_loglik(model: Any, train: RatingData, U: torch.Tensor, V: torch.Tensor, alpha: torch.Tensor | float | None,
                data: RatingData) -> torch.Tensor:
    """log N(r_ij; offset + u_i . v_j, 1 / alpha) of every rating of ``data`` at draws U (..., N, K), V (..., M, K),
    alpha (...) (None: the model's fixed alpha) -> (..., n). The offset is the training mean when the model centres."""
    alpha = torch.as_tensor(model.alpha if alpha is None else alpha, dtype=U.dtype)
    mean = model.offset(train) + (U[..., data.rows, :] * V[..., data.cols, :]).sum(-1)
    return td.Normal(mean, (1.0 / alpha.sqrt())[..., None]).log_prob(data.values)


def sampled_nll(model: Any, train: RatingData, q: Any, data: RatingData, *, num_draws: int = 100,
                generator: torch.Generator | None = None, chunk: int = 20) -> float:
    """Negative log predictive density per rating of ``data`` from ``num_draws`` draws of the variational family q
    (a VBState): -mean_n log (1/S) sum_s N(r_n; offset + u_i^(s) . v_j^(s), 1 / alpha^(s)), the Monte Carlo
    estimate the course reports ("NLL from 100 posterior draws"). alpha: q's draws where q covers it, else the
    model's fixed alpha. Draws are made ``chunk`` at a time (memory S x n)."""
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws!r}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    acc = None
    for start in range(0, num_draws, chunk):
        draws = q.sample(min(chunk, num_draws - start), generator)
        lp = torch.logsumexp(draw_loglik(model, train, draws["U"], draws["V"], draws.get("alpha"), data), 0)
        acc = lp if acc is None else torch.logaddexp(acc, lp)
    return float(-(acc - math.log(num_draws)).mean())


class RunningPredictive:
    """The posterior predictive density of each rating of ``data`` averaged over the draws seen so far, for a
    sampler's per-sweep trace (e.g. from fit_gibbs's callback).

    ``update(U, V, alpha)`` adds one draw and returns (log-likelihood per rating at this draw, log predictive
    density per rating over all draws so far: mean_n log (1/S) sum_s N(r_n; ...))."""

    def __init__(self, model: Any, train: RatingData, data: RatingData):
        self.model, self.train, self.data = model, train, data
        self.count = 0
        self._acc: torch.Tensor | None = None

    def update(self, U: torch.Tensor, V: torch.Tensor, alpha: torch.Tensor | float | None = None
               ) -> tuple[float, float]:
        lp = draw_loglik(self.model, self.train, U, V, alpha, self.data)
        self._acc = lp if self._acc is None else torch.logaddexp(self._acc, lp)
        self.count += 1
        return float(lp.mean()), float((self._acc - math.log(self.count)).mean())


def predict(model: Any, train: RatingData, result: Any, rows, cols, *, clip: tuple[float, float] | None = None,
            chunk: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Posterior predictive mean and sd of u_i . v_j (+ offset) at the given cells, over all draws.

    The sd is that of the predicted mean rating across posterior draws (not including the noise 1/alpha).
    ``clip`` clamps each draw's prediction to a rating range before averaging."""
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)
    rows = torch.as_tensor(check_index(rows, U.shape[-2], "rows"))
    cols = torch.as_tensor(check_index(cols, V.shape[-2], "cols"))
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have the same shape, got {tuple(rows.shape)} and {tuple(cols.shape)}")
    s1 = torch.zeros(len(rows), dtype=torch.float64)
    s2 = torch.zeros(len(rows), dtype=torch.float64)
    off = model.offset(train)
    for start in range(0, len(U), chunk):
        p = off + (U[start:start + chunk, rows] * V[start:start + chunk, cols]).sum(-1)
        if clip is not None:
            p = p.clamp(*clip)
        s1 += p.sum(0)
        s2 += (p ** 2).sum(0)
    S = len(U)
    mean = s1 / S
    return mean.numpy(), torch.sqrt((s2 / S - mean ** 2).clamp_min(0)).numpy()


def recommend(model: Any, train: RatingData, result: Any, user: int, *, n: int = 10, titles=None,
              exclude_rated: bool = True, clip: tuple[float, float] | None = (1.0, 5.0)):
    """Top-``n`` items for one user by posterior mean predicted rating, with its uncertainty.

    Returns a pandas DataFrame: item, title (when ``titles`` (M,) is given), mean, sd (posterior sd of the mean
    rating u_i . v_j + offset across draws), predictive_sd (sqrt(sd^2 + 1 / alpha): the spread of a new rating),
    and the 90% posterior interval of the mean rating (lo90, hi90). Items the user rated in ``train`` are
    left out when ``exclude_rated``."""
    import pandas as pd

    N, M = train.shape
    if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < N:
        raise ValueError(f"user must be a row index in [0, {N}), got {user!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if titles is not None and len(titles) != M:
        raise ValueError(f"titles has {len(titles)} entries, the data have {M} items")
    items = torch.arange(M)
    if exclude_rated:
        rated = torch.zeros(M, dtype=torch.bool)
        rated[train.cols[train.rows == user]] = True
        items = items[~rated]
    mean, sd = predict(model, train, result, torch.full((len(items),), user), items, clip=clip)
    top = np.argsort(-mean, kind="stable")[:n]
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)[:, user]
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)[:, items[top]]
    draws = (model.offset(train) + (V * U[:, None, :]).sum(-1)).numpy()
    if clip is not None:
        draws = np.clip(draws, *clip)
    if "alpha" in result.posterior and model.noise_prior is not None:
        noise_var = float(np.mean(1.0 / np.asarray(result.posterior["alpha"])))
    else:
        noise_var = 1.0 / model.alpha
    out = pd.DataFrame({"item": items[top].numpy(), "mean": mean[top], "sd": sd[top],
                        "predictive_sd": np.sqrt(sd[top] ** 2 + noise_var),
                        "lo90": np.quantile(draws, 0.05, axis=0), "hi90": np.quantile(draws, 0.95, axis=0)})
    if titles is not None:
        out.insert(1, "title", np.asarray(titles)[out["item"].to_numpy()])
    return out
