"""What users do with a fitted Gaussian MF: posterior predictive means and sds, held-out RMSE and log predictive
density, and recommendations with their uncertainty. Every function takes an InferenceResult of any method."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributions as td

from models.data import RatingData, check_index

__all__ = ["predict", "recommend", "heldout_scores"]


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
