"""Spherical Gaussian mixtures: the MITx 6.86x course algorithms, exactly, fully vectorised.

Notation:
    n rows (points / users), d coordinates, K components.
    mixture = (mu: (K, d) means, var: (K,) spherical variances, p: (K,) weights).
    post: (n, K) posterior responsibilities.  For matrix completion, 0 marks a missing entry and
    C_u is the set of observed coordinates of row u.

Reference algorithms (docs/REFERENCE.md section 3), every one reproducing the course's numbers:
    init(X, K, seed)               same numpy random calls as the course: the same initial means
    kmeans(X, mixture)             hard assignment; stop when the cost decreases by <= 1e-4
    em_complete(X, mixture)        E-step / M-step on complete data
    em_missing(X, mixture)         log-domain E-step on observed coordinates, the >= 1 support rule
                                   for means and the 0.25 variance floor
    fill_matrix, rmse, bic         the course's helpers
Stopping rule of both EMs: iterate while new_LL - old_LL > 1e-6 |new_LL|. As in the course, the loop
runs E-step then M-step, and the LL returned is that of the last E-step.
No Python loop over rows, coordinates or components anywhere: every step is a few matrix products.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

__all__ = ["DegenerateMixture", "GaussianMixture", "init", "kmeans", "em_complete", "em_missing", "estep_missing", "mstep_missing",
           "estep_complete", "mstep_complete", "fill_matrix", "rmse", "bic", "num_parameters", "EMRun",
           "P_FLOOR", "MIN_VARIANCE", "TOL_LL", "TOL_KMEANS"]

P_FLOOR = 1e-16  # the course's log(p_j + 1e-16) in the log-domain E-step
MIN_VARIANCE = 0.25  # the course's variance floor for EM with missing entries
TOL_LL = 1e-6  # relative LL tolerance of both EMs
TOL_KMEANS = 1e-4  # absolute cost tolerance of K-means


class DegenerateMixture(ValueError):
    """A run that cannot go on: a K-means cluster lost all its points, a component's variance is 0 (a component on
    identical points: the likelihood is unbounded), or the log-likelihood is not finite. Raised rather than
    returning NaN means or a NaN log-likelihood."""


class GaussianMixture(NamedTuple):
    """Spherical Gaussian mixture: mu (K, d), var (K,), p (K,)."""

    mu: np.ndarray
    var: np.ndarray
    p: np.ndarray


class EMRun(NamedTuple):
    """Outcome of a K-means or EM run: the final mixture, posteriors (n, K), the objective (LL, or the
    K-means cost), the number of E-steps, and the objective after each E-step."""

    mixture: GaussianMixture
    post: np.ndarray
    objective: float
    iterations: int
    trace: np.ndarray


def _check_X(X: np.ndarray, K: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty (n, d) matrix, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X must be finite (use 0 for missing entries, not NaN)")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    if K > X.shape[0]:
        raise ValueError(f"K={K} exceeds the number of rows n={X.shape[0]}")
    return X


def init(X: np.ndarray, K: int, seed: int = 0) -> tuple[GaussianMixture, np.ndarray]:
    """The course's initialisation: K distinct rows of X as means, var_j = mean((X - mu_j)^2) over all
    entries, p = 1/K, post = 1/K.

    Uses ``np.random.RandomState(seed).choice(n, K, replace=False)``, the same generator and call as the
    course's ``np.random.seed(seed); np.random.choice(...)``, without touching numpy's global state.
    """
    X = _check_X(X, K)
    n = X.shape[0]
    distinct = len(np.unique(X, axis=0))
    if distinct < K:
        raise DegenerateMixture(f"X has {distinct} distinct row(s), fewer than K={K}: the starting means would "
                                "coincide (duplicate or constant rows)")
    mu = X[np.random.RandomState(seed).choice(n, K, replace=False)]
    var = ((X[None, :, :] - mu[:, None, :]) ** 2).mean(axis=(1, 2))
    return GaussianMixture(mu, var, np.full(K, 1.0 / K)), np.full((n, K), 1.0 / K)


def _sq_dist(X: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """(n, K) squared distances |x_u - mu_j|^2 = |x_u|^2 - 2 x_u . mu_j + |mu_j|^2."""
    return np.maximum((X ** 2).sum(1)[:, None] - 2.0 * X @ mu.T + (mu ** 2).sum(1)[None, :], 0.0)


# ---------------------------------------------------------------------------------------------------
# K-means (the course's variant that returns a mixture)


def kmeans(X: np.ndarray, mixture: GaussianMixture) -> EMRun:
    """Hard-assignment K-means from ``mixture.mu``; M-step: mu_j = cluster mean, var_j = SSE_j / (d n_j),
    p_j = n_j / n; cost = total SSE. Stops when the cost decreases by <= 1e-4."""
    X = _check_X(X, len(mixture.p))
    n, d = X.shape
    K = len(mixture.p)
    prev_cost, cost, costs, it = None, None, [], 0
    while prev_cost is None or prev_cost - cost > TOL_KMEANS:
        prev_cost = cost
        # E-step: one-hot on the nearest mean (ties: the first, as np.argmin)
        j = np.argmin(((X[:, None, :] - mixture.mu[None]) ** 2).sum(-1), axis=1)
        post = np.zeros((n, K))
        post[np.arange(n), j] = 1.0
        # M-step
        n_hat = post.sum(0)
        if (n_hat == 0).any():
            raise DegenerateMixture(f"K-means cluster {int(np.flatnonzero(n_hat == 0)[0])} of {K} lost all its points "
                                    f"at iteration {it + 1} (starting means on duplicate rows)")
        mu = (post.T @ X) / n_hat[:, None]
        sse = (((mu[None] - X[:, None, :]) ** 2).sum(-1) * post).sum(0)
        mixture = GaussianMixture(mu, sse / (d * n_hat), n_hat / n)
        cost = float(sse.sum())
        costs.append(cost)
        it += 1
    return EMRun(mixture, post, cost, it, np.array(costs))


# ---------------------------------------------------------------------------------------------------
# EM on complete data


def estep_complete(X: np.ndarray, mixture: GaussianMixture) -> tuple[np.ndarray, float]:
    """Posteriors post_uj ∝ p_j N(x_u; mu_j, var_j I) and the log-likelihood (probability domain, as
    the course's naive EM)."""
    d = X.shape[1]
    if (mixture.var <= 0).any():
        raise DegenerateMixture(f"component {int(np.flatnonzero(mixture.var <= 0)[0])} has variance 0: it sits on "
                                "identical points, where the likelihood is unbounded")
    dens = np.exp(-_sq_dist(X, mixture.mu) / (2 * mixture.var)) / (2 * np.pi * mixture.var) ** (d / 2)
    weighted = dens * mixture.p
    total = weighted.sum(1, keepdims=True)
    return weighted / total, float(np.log(total).sum())


def mstep_complete(X: np.ndarray, post: np.ndarray) -> GaussianMixture:
    """p = n_hat / n, mu_j = weighted mean, var_j = sum_u post_uj |x_u - mu_j|^2 / (d n_hat_j)."""
    n, d = X.shape
    n_hat = post.sum(0)
    mu = (post.T @ X) / n_hat[:, None]
    var = (post * _sq_dist(X, mu)).sum(0) / (d * n_hat)
    return GaussianMixture(mu, var, n_hat / n)


def _check_ll(ll: float, it: int) -> None:
    if not np.isfinite(ll):
        raise DegenerateMixture(f"the log-likelihood is {ll} at iteration {it + 1} (a component with no weight or "
                                "a density that underflowed everywhere)")


def _em(X, mixture, estep, mstep) -> EMRun:
    prev_ll, ll, lls, it, post = None, None, [], 0, None
    while prev_ll is None or ll - prev_ll > TOL_LL * abs(ll):
        prev_ll = ll
        post, ll = estep(X, mixture)
        _check_ll(ll, it)
        mixture = mstep(X, post, mixture)
        lls.append(ll)
        it += 1
    return EMRun(mixture, post, ll, it, np.array(lls))


def em_complete(X: np.ndarray, mixture: GaussianMixture) -> EMRun:
    """The course's naive EM on complete data, from ``mixture``."""
    X = _check_X(X, len(mixture.p))
    return _em(X, mixture, estep_complete, lambda X, post, _: mstep_complete(X, post))


# ---------------------------------------------------------------------------------------------------
# EM with missing entries (0 = missing)


class _Observed(NamedTuple):
    """Per-matrix quantities reused by every EM iteration: XO = [X, 1_C] (n, 2d), |x_C|^2 (n,), |C_u| (n,)."""

    XO: np.ndarray
    xx: np.ndarray
    n_obs: np.ndarray


def _observed(X: np.ndarray) -> _Observed:
    observed = (X != 0).astype(np.float64)
    return _Observed(np.hstack([X, observed]), (X ** 2).sum(1), observed.sum(1))


def _sq_dist_observed(obs: _Observed, mu: np.ndarray) -> np.ndarray:
    """(n, K) sum_{i in C_u} (x_ui - mu_ji)^2 = |x_C|^2 - 2 x . mu_j + 1_C . mu_j^2 (missing x are 0):
    one (n, 2d) x (2d, K) product."""
    return np.maximum(obs.xx[:, None] + obs.XO @ np.vstack([-2.0 * mu.T, (mu ** 2).T]), 0.0)


def _estep_observed(obs: _Observed, mixture: GaussianMixture, dist: np.ndarray) -> tuple[np.ndarray, float]:
    f = (np.log(mixture.p + P_FLOOR)[None, :] - 0.5 * obs.n_obs[:, None] * np.log(2 * np.pi * mixture.var)[None, :]
         - dist / (2 * mixture.var)[None, :])
    lse = logsumexp(f, axis=1, keepdims=True)
    return np.exp(f - lse), float(lse.sum())


def _mstep_observed(obs: _Observed, post: np.ndarray, mixture: GaussianMixture,
                    min_variance: float) -> tuple[GaussianMixture, np.ndarray]:
    n, d = obs.XO.shape[0], obs.XO.shape[1] // 2
    stats = post.T @ obs.XO  # (K, 2d): sum_u post_uj x_ui and the support sum_u post_uj [i in C_u]
    weighted, support = stats[:, :d], stats[:, d:]
    mu = np.where(support >= 1, weighted / np.where(support >= 1, support, 1.0), mixture.mu)
    dist = _sq_dist_observed(obs, mu)
    var = (post * dist).sum(0) / (post * obs.n_obs[:, None]).sum(0)
    return GaussianMixture(mu, np.maximum(var, min_variance), post.sum(0) / n), dist


def estep_missing(X: np.ndarray, mixture: GaussianMixture) -> tuple[np.ndarray, float]:
    """Log-domain E-step on the observed coordinates:
    f(u, j) = log(p_j + 1e-16) - |C_u|/2 log(2 pi var_j) - |x_Cu - mu_j,Cu|^2 / (2 var_j),
    post = softmax_j f, LL = sum_u logsumexp_j f(u, j)."""
    obs = _observed(np.asarray(X, dtype=np.float64))
    return _estep_observed(obs, mixture, _sq_dist_observed(obs, mixture.mu))


def mstep_missing(X: np.ndarray, post: np.ndarray, mixture: GaussianMixture,
                  min_variance: float = MIN_VARIANCE) -> GaussianMixture:
    """M-step with missing entries:
    mu_ji = sum_u post_uj [i in C_u] x_ui / sum_u post_uj [i in C_u], updated only where that denominator
    is >= 1 (else the old mu_ji is kept); var_j = sum_u post_uj |x_Cu - mu_j,Cu|^2 / sum_u |C_u| post_uj
    with the new means, floored at min_variance; p = n_hat / n."""
    return _mstep_observed(_observed(np.asarray(X, dtype=np.float64)), post, mixture, min_variance)[0]


def em_missing(X: np.ndarray, mixture: GaussianMixture, min_variance: float = MIN_VARIANCE) -> EMRun:
    """The course's EM for matrix completion, from ``mixture``. The squared distances computed for the
    M-step's variances are those the next E-step needs, so each iteration costs two matrix products."""
    X = _check_X(X, len(mixture.p))
    obs = _observed(X)
    dist = _sq_dist_observed(obs, mixture.mu)
    prev_ll, ll, lls, post = None, None, [], None
    while prev_ll is None or ll - prev_ll > TOL_LL * abs(ll):
        prev_ll = ll
        post, ll = _estep_observed(obs, mixture, dist)
        _check_ll(ll, len(lls))
        mixture, dist = _mstep_observed(obs, post, mixture, min_variance)
        lls.append(ll)
    return EMRun(mixture, post, ll, len(lls), np.array(lls))


def fill_matrix(X: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """Missing x_ui <- sum_j post_uj mu_ji (post from the log-domain E-step); observed entries kept."""
    X = np.asarray(X, dtype=np.float64)
    post, _ = estep_missing(X, mixture)
    return np.where(X == 0, post @ mixture.mu, X)


def rmse(X: np.ndarray, Y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """sqrt(mean((X - Y)^2)) over all entries (the course's figure), or over ``mask`` only."""
    diff2 = (np.asarray(X, dtype=np.float64) - np.asarray(Y, dtype=np.float64)) ** 2
    return float(np.sqrt(diff2[mask].mean() if mask is not None else diff2.mean()))


def num_parameters(K: int, d: int) -> int:
    """Free parameters of a spherical mixture: K d means + K variances + (K - 1) weights."""
    return K * d + K + (K - 1)


def bic(X: np.ndarray, mixture: GaussianMixture, log_likelihood: float) -> float:
    """BIC = LL - 0.5 p log n (larger is better), as the course defines it."""
    n, d = np.asarray(X).shape
    return float(log_likelihood - 0.5 * num_parameters(len(mixture.p), d) * np.log(n))


# ---------------------------------------------------------------------------------------------------
# The course's data sets


COURSE_DATA = ("netflix", "test", "toy")


def load_course_matrix(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, gold) for a course data set: "netflix" and "test" give the incomplete matrix (0 = missing) and the
    complete one; "toy" gives the 250 x 2 points and None."""
    from models.datasets import load_netflix

    if name in ("netflix", "test"):
        nf = load_netflix(name)
        return nf.incomplete, nf.complete
    if name == "toy":
        return load_netflix("toy"), None
    raise ValueError(f"{name!r}: not a course data set ({', '.join(COURSE_DATA)})")
