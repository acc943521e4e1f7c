"""What users do with a fitted Poisson MF: expected rates, recommendations, and the course's "genres".

Every function takes an InferenceResult of any method (variational or sampler).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.data import CountMatrix

__all__ = ["expected_rates", "expected_total_rate", "recommend", "factor_top_items", "factor_top_records",
           "recall_at_k"]


def _draws(result: Any, name: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(result.posterior[name]))


def expected_rates(result: Any, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Posterior mean E[theta_n . eta_m] at the given cells (C,).

    Variational results (q(theta) q(eta) independent): E[theta_n] . E[eta_m] exactly. Samplers: the mean
    over all chains and draws of theta_n . eta_m (never of theta and eta separately: label switching).
    """
    from models.data import check_index

    N, M = len(result.coords["row"]), len(result.coords["col"])
    rows = torch.as_tensor(check_index(rows, N, "rows"))
    cols = torch.as_tensor(check_index(cols, M, "cols"))
    if result.variational is not None:
        theta, eta = torch.as_tensor(result.point["theta"]), torch.as_tensor(result.point["eta"])
        return (theta[rows] * eta[cols]).sum(-1)
    theta, eta = _draws(result, "theta"), _draws(result, "eta")
    return (theta[..., rows, :] * eta[..., cols, :]).sum(-1).mean((0, 1))


def expected_total_rate(result: Any) -> float:
    """Posterior mean of sum_nm theta_n . eta_m."""
    if result.variational is not None:
        theta, eta = torch.as_tensor(result.point["theta"]), torch.as_tensor(result.point["eta"])
        return float((theta.sum(0) * eta.sum(0)).sum())
    return float((_draws(result, "theta").sum(-2) * _draws(result, "eta").sum(-2)).sum(-1).mean())


def recommend(result: Any, user: Any, n: int = 10, exclude_seen: bool = True, *,
              data: CountMatrix | None = None):
    """Top-n items for one user by posterior mean rate E[theta_user . eta_m].

    Args:
        result: an InferenceResult of PoissonMF (any method).
        user: a row label (e.g. LastFM UserID 349); plain row indices when the data have no labels.
        exclude_seen: drop items the user already has a count for (needs the data: ``result.data`` or
            ``data``).

    Returns:
        pandas DataFrame with columns item (label), name, expected_rate, seen, ranked best first.
    """
    import pandas as pd

    data = data if data is not None else result.data
    rows = np.asarray(result.coords["row"])
    hits = np.flatnonzero(rows == user)
    if hits.size == 0:
        raise ValueError(f"user {user!r} is not a row label of this result (labels {rows[:3].tolist()}...)")
    n_idx = int(hits[0])
    M = len(result.coords["col"])
    rates = expected_rates(result, torch.full((M,), n_idx), torch.arange(M)).numpy()
    seen = np.zeros(M, dtype=bool)
    if exclude_seen:
        if data is None:
            raise ValueError("exclude_seen=True needs the data: pass data=... (a loaded result does not keep it)")
        seen[data.cols[data.rows == n_idx].cpu().numpy()] = True
    names = data.col_names if data is not None and data.col_names is not None else np.asarray(result.coords["col"])
    order = [m for m in np.argsort(-rates) if not (exclude_seen and seen[m])][:n]
    return pd.DataFrame({"item": np.asarray(result.coords["col"])[order], "name": np.asarray(names)[order],
                         "expected_rate": rates[order], "seen": seen[order]})


def factor_top_items(result: Any, n: int = 10, *, data: CountMatrix | None = None, num_factors: int | None = None):
    """The course's "genres": for each factor k, ordered by total loading sum_n E[theta_nk] (largest
    first), the n items with the largest E[eta_mk].

    For samplers, means of chain 0 are used (factors are only meaningful within one chain).

    Returns:
        pandas DataFrame with columns factor, loading, rank, item, name, weight (:func:`factor_top_records`).
    """
    import pandas as pd

    return pd.DataFrame(factor_top_records(result, n, data=data, num_factors=num_factors))


def factor_top_records(result: Any, n: int = 10, *, data: CountMatrix | None = None,
                       num_factors: int | None = None) -> list[dict]:
    """:func:`factor_top_items` as a list of records (dicts with factor, loading, rank, item, name, weight), in the
    same order; no pandas import (the command line's fit report)."""
    data = data if data is not None else result.data
    theta, eta = np.asarray(result.point["theta"]), np.asarray(result.point["eta"])
    loading = theta.sum(0)
    names = data.col_names if data is not None and data.col_names is not None else np.asarray(result.coords["col"])
    records = []
    for k in np.argsort(-loading)[: num_factors or len(loading)]:
        for rank, m in enumerate(np.argsort(-eta[:, k])[:n]):
            records.append({"factor": int(k), "loading": float(loading[k]), "rank": rank + 1,
                            "item": np.asarray(result.coords["col"])[m], "name": names[m], "weight": float(eta[m, k])})
    return records


def recall_at_k(result: Any, train: CountMatrix, test: CountMatrix, k: int = 20) -> float:
    """Recall at k of held-out cells (CountMatrix.hold_out_cells): for each row with test cells, the k columns of
    highest posterior mean rate E[theta_n . eta_m] among those with no training count, and the share of the row's
    test columns among them, |top k & test| / min(k, |test|); the mean over those rows."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    N, M = train.shape
    if test.shape != (N, M):
        raise ValueError(f"test has shape {test.shape}, train {train.shape}")
    hits = torch.zeros(N, dtype=torch.float64)
    held = torch.bincount(test.rows, minlength=N).to(torch.float64)
    test_set = torch.zeros(N, M, dtype=torch.bool)
    test_set[test.rows, test.cols] = True
    if result.variational is not None:  # E[theta_n] . E[eta_m] exactly (q independent)
        theta = torch.as_tensor(result.point["theta"])[None, None]
        eta = torch.as_tensor(result.point["eta"])[None, None]
    else:  # the mean over draws of theta_n . eta_m (never of theta and eta separately: label switching)
        theta, eta = _draws(result, "theta"), _draws(result, "eta")
    draws = theta.shape[0] * theta.shape[1]
    step = max(1, 4_000_000 // (M * draws))
    for start in range(0, N, step):  # rows in blocks: (draws, rows, M) rates at a time, never N x M per draw
        rows = torch.arange(start, min(N, start + step))
        rates = (theta[..., rows, :] @ eta.transpose(-1, -2)).mean((0, 1))
        seen = (train.rows >= start) & (train.rows < start + len(rows))
        rates[train.rows[seen] - start, train.cols[seen]] = -torch.inf
        top = rates.topk(min(k, M), dim=1).indices
        hits[rows] = test_set[rows[:, None], top].sum(1).to(torch.float64)
    some = held > 0
    return float((hits[some] / held[some].clamp(max=k)).mean())
