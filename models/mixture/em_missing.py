"""Gaussian mixtures with missing entries, beyond the course: exact EM for spherical, diagonal and full
covariances, k-means++ starts, best of n_init, a shrinkage (MAP) variance floor, and posterior-predictive
imputation with a standard deviation for every filled entry.

Notation: n rows, d coordinates, K components; 0 marks a missing entry (as in the course) and
o_ui = [x_ui observed]. Component j has mean mu_j (d,) and variances s2_j (d,) (spherical: all equal).

Exact EM treats the missing entries as latent: within component j they are N(mu_ji, s2_ji) and independent
of the observed ones (diagonal covariance), so with r_uj the responsibilities and old parameters (mu', s2')
    E-step:  log r_uj ∝ log p_j + sum_i o_ui log N(x_ui; mu'_ji, s2'_ji)                                (eq. 1)
    M-step:  mu_ji  = [sum_u r_uj o_ui x_ui + mu'_ji sum_u r_uj (1 - o_ui)] / n_j                          (eq. 2)
             S_ji   = sum_u r_uj o_ui (x_ui - mu_ji)^2 + sum_u r_uj (1 - o_ui) [(mu'_ji - mu_ji)^2 + s2'_ji]   (eq. 3)
             s2_ji  = (S_ji + nu s2_0) / (n_j + nu)   (diag);   s2_j = (sum_i S_ji + nu d s2_0) / (d n_j + nu d)
with nu = 0 the plain maximum-likelihood update (the observed-data LL never decreases) and nu > 0 a
scaled-inverse-chi^2 prior centred on the data variance s2_0 (MAP; keeps variances away from zero).
The course's variant (models.course.gmm.em_missing) instead re-estimates from observed entries only
(mu_ji = sum_u r_uj o_ui x_ui / sum_u r_uj o_ui, s2_j = sum r o (x - mu)^2 / sum_u r_uj |C_u|). Setting
mu = mu' and s2 = s2' in eqs. 2-3 shows that both maps have the same fixed points (without the course's
0.25 floor and >= 1 support rule): they differ in the path, not in where they stop.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from models.course.gmm import TOL_LL, DegenerateMixture, GaussianMixture, _check_X

__all__ = ["DiagonalMixture", "FullMixture", "FitResult", "fit_missing", "kmeanspp_means", "impute",
           "log_likelihood"]

MAX_FULL_PATTERNS = 5000  # full covariances loop over missingness patterns: refuse hopeless inputs


class DiagonalMixture(NamedTuple):
    """Mixture with diagonal covariances: mu (K, d), var (K, d), p (K,), covariance "spherical"|"diag"."""

    mu: np.ndarray
    var: np.ndarray
    p: np.ndarray
    covariance: str


class FullMixture(NamedTuple):
    """Mixture with full covariances: mu (K, d), cov (K, d, d), p (K,)."""

    mu: np.ndarray
    cov: np.ndarray
    p: np.ndarray
    covariance: str = "full"


class FitResult(NamedTuple):
    """Best fit over n_init starts: the mixture, responsibilities (n, K), the observed-data LL, the LL
    after each E-step of the best start, the LL of every start, and the number of E-steps."""

    mixture: DiagonalMixture
    post: np.ndarray
    log_likelihood: float
    trace: np.ndarray
    start_lls: np.ndarray
    iterations: int


def _as_diagonal(m: GaussianMixture | DiagonalMixture, d: int) -> DiagonalMixture:
    if isinstance(m, DiagonalMixture):
        return m
    return DiagonalMixture(m.mu, np.repeat(np.asarray(m.var)[:, None], d, axis=1), m.p, "spherical")


def _estep(X: np.ndarray, O: np.ndarray, m: DiagonalMixture) -> tuple[np.ndarray, float]:
    """Responsibilities and observed-data LL (eq. 1), as matrix products over (n, d) x (d, K)."""
    prec = 1.0 / m.var  # (K, d)
    log_dens = -0.5 * (O @ np.log(2 * np.pi * m.var).T + (X ** 2) @ prec.T - 2.0 * X @ (m.mu * prec).T
                       + O @ (m.mu ** 2 * prec).T)
    f = np.log(m.p)[None, :] + log_dens
    lse = logsumexp(f, axis=1, keepdims=True)
    return np.exp(f - lse), float(lse.sum())


def log_likelihood(X: np.ndarray, mixture: GaussianMixture | DiagonalMixture) -> float:
    """Observed-data log-likelihood sum_u log sum_j p_j N(x_Ou; mu_jO, diag s2_jO) (0 = missing)."""
    X = np.asarray(X, dtype=np.float64)
    O = (X != 0).astype(np.float64)
    if isinstance(mixture, FullMixture):
        return _full_pass(X, _patterns(O), mixture)[1]
    return _estep(X, O, _as_diagonal(mixture, X.shape[1]))[1]


def _mstep(X: np.ndarray, O: np.ndarray, post: np.ndarray, m: DiagonalMixture, nu: float,
           s2_0: float) -> DiagonalMixture:
    n, d = X.shape
    n_j = post.sum(0)  # (K,)
    obs_w = post.T @ O  # (K, d) sum_u r_uj o_ui
    mis_w = n_j[:, None] - obs_w  # sum_u r_uj (1 - o_ui)
    rx = post.T @ X  # missing x are 0
    mu = (rx + m.mu * mis_w) / n_j[:, None]  # eq. 2
    S = (post.T @ (X ** 2) - 2.0 * mu * rx + mu ** 2 * obs_w
         + mis_w * ((m.mu - mu) ** 2 + m.var))  # eq. 3
    if m.covariance == "diag":
        var = (S + nu * s2_0) / (n_j[:, None] + nu)
    else:
        var = np.repeat(((S.sum(1) + nu * d * s2_0) / (d * n_j + nu * d))[:, None], d, axis=1)
    return DiagonalMixture(mu, var, n_j / n, m.covariance)


# ---------------------------------------------------------------------------------------------------
# Full covariances with missing entries: exact EM with conditional Gaussian marginals. Rows are grouped by
# their missingness pattern (observed set o, missing set m); within a pattern everything is vectorised.
#   E-step: log r_uj ∝ log p_j + log N(x_uo; mu_jo, S_joo)                                                (eq. 4)
#   x_hat_ujm = mu_jm + S_jmo S_joo^-1 (x_uo - mu_jo),  C_ujmm = S_jmm - S_jmo S_joo^-1 S_jom                 (eq. 5)
#   M-step: mu_j = sum_u r_uj x_hat_uj / n_j;  S_j = sum_u r_uj (x_hat x_hat^T + C_uj) / n_j - mu_j mu_j^T    (eq. 6)


def _patterns(O: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, observed-coordinate mask) for each distinct missingness pattern."""
    keys, inverse = np.unique(O.astype(bool), axis=0, return_inverse=True)
    if len(keys) > MAX_FULL_PATTERNS:
        raise ValueError(f"covariance='full' handles rows pattern by pattern; this matrix has {len(keys)} distinct "
                         f"missingness patterns (limit {MAX_FULL_PATTERNS}): use 'diag' or 'spherical'")
    return [(np.flatnonzero(inverse.ravel() == k), keys[k]) for k in range(len(keys))]


def _conditional(X_rows: np.ndarray, o: np.ndarray, m: FullMixture, j: int):
    """For rows sharing the observed set o and component j: log p_j + log N(x_o; mu_jo, S_joo) (eq. 4),
    the completed rows x_hat (eq. 5) and the conditional covariance C (d, d), zero outside the missing block."""
    d = X_rows.shape[1]
    mis = ~o
    xo = X_rows[:, o]
    L = np.linalg.cholesky(m.cov[j][np.ix_(o, o)])
    diff = xo - m.mu[j, o]
    sol = np.linalg.solve(L, diff.T)  # L^-1 (x_o - mu_o): (|o|, rows)
    logf = np.log(m.p[j]) - 0.5 * (sol ** 2).sum(0) - np.log(np.diag(L)).sum() - 0.5 * o.sum() * np.log(2 * np.pi)
    xhat = np.empty((len(X_rows), d))
    xhat[:, o] = xo
    C = np.zeros((d, d))
    if mis.any():
        S_mo = m.cov[j][np.ix_(mis, o)]
        A = np.linalg.solve(L.T, np.linalg.solve(L, S_mo.T)).T  # S_mo S_oo^-1
        xhat[:, mis] = m.mu[j, mis] + diff @ A.T
        C[np.ix_(mis, mis)] = m.cov[j][np.ix_(mis, mis)] - A @ S_mo.T
    return logf, xhat, C


def _full_pass(X: np.ndarray, pats, m: FullMixture):
    """E-step (eq. 4) and the conditional completions of eq. 5, pattern by pattern.

    Returns post (n, K), LL, and per pattern a list over components of (x_hat, C)."""
    K = len(m.p)
    logf = np.empty((X.shape[0], K))
    completions = []
    for rows, o in pats:
        per_j = []
        for j in range(K):
            logf[rows, j], xhat, C = _conditional(X[rows], o, m, j)
            per_j.append((xhat, C))
        completions.append(per_j)
    lse = logsumexp(logf, axis=1, keepdims=True)
    return np.exp(logf - lse), float(lse.sum()), completions


def _full_stats(post, pats, completions):
    """M-step sums of eq. 6: T1_j = sum_u r_uj x_hat_uj, T2_j = sum_u r_uj (x_hat x_hat^T + C_uj)."""
    K, d = post.shape[1], completions[0][0][0].shape[1]
    T1, T2 = np.zeros((K, d)), np.zeros((K, d, d))
    for (rows, _), per_j in zip(pats, completions):
        for j, (xhat, C) in enumerate(per_j):
            r = post[rows, j]
            T1[j] += r @ xhat
            T2[j] += (xhat * r[:, None]).T @ xhat + r.sum() * C
    return T1, T2


def _full_mstep(post, stats, min_variance: float, nu: float, s2_0: float) -> FullMixture:
    T1, T2 = stats
    n_j = post.sum(0)
    d = T1.shape[1]
    mu = T1 / n_j[:, None]
    cov = T2 / n_j[:, None, None] - mu[:, :, None] * mu[:, None, :]
    if nu > 0:  # MAP under an inverse-Wishart-like shrinkage toward s2_0 I
        cov = (n_j[:, None, None] * cov + nu * s2_0 * np.eye(d)) / (n_j[:, None, None] + nu)
    cov = 0.5 * (cov + np.transpose(cov, (0, 2, 1))) + min_variance * np.eye(d)
    return FullMixture(mu, cov, n_j / post.shape[0])


def kmeanspp_means(X: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on rows with missing entries filled by column means:
    the first mean uniformly, each next one with probability proportional to the squared distance to the
    nearest mean chosen so far. Returns (K, d) rows of the filled matrix."""
    O = X != 0
    col_mean = np.where(O.sum(0) > 0, X.sum(0) / np.maximum(O.sum(0), 1), 0.0)
    Z = np.where(O, X, col_mean[None, :])
    idx = [int(rng.integers(len(Z)))]
    d2 = ((Z - Z[idx[0]]) ** 2).sum(1)
    for _ in range(1, K):
        total = d2.sum()
        nxt = int(rng.choice(len(Z), p=d2 / total)) if total > 0 else int(rng.integers(len(Z)))
        idx.append(nxt)
        d2 = np.minimum(d2, ((Z - Z[nxt]) ** 2).sum(1))
    return Z[idx]


def fit_missing(X: np.ndarray, K: int, *, covariance: str = "spherical", init: str = "kmeans++", n_init: int = 1,
                seed: int = 0, shrinkage: float = 0.0, min_variance: float = 1e-6, max_iter: int = 1000,
                tol: float = TOL_LL) -> FitResult:
    """Exact EM for a spherical or diagonal mixture with missing entries (0 = missing); best of n_init.

    Args:
        covariance: "spherical", "diag" or "full" (full: conditional Gaussian marginals, rows grouped by
            missingness pattern; meant for small d, refused beyond MAX_FULL_PATTERNS patterns).
        init: "kmeans++" (seeded from ``seed``) or "course" (models.course.gmm.init with seeds seed, seed+1, ...).
        n_init: number of starts; the one with the highest final LL is returned.
        shrinkage: nu of eqs. 3 (0 = maximum likelihood; > 0 = MAP variance pulled toward the data variance).
        min_variance: variances are clamped at this floor (the constrained M-step keeps the LL monotone);
            it stops a component from collapsing onto one point, where the likelihood is unbounded. For full
            covariances it is added to the diagonal (as scikit-learn's reg_covar).
        tol: stop when the LL gains <= tol |LL| (the course's rule).

    Raises:
        ValueError: bad X, K, covariance, init or n_init.
    """
    from models.course.gmm import init as course_init

    X = _check_X(X, K)
    if covariance not in ("spherical", "diag", "full"):
        raise ValueError(f"covariance must be 'spherical', 'diag' or 'full', got {covariance!r}")
    if init not in ("kmeans++", "course"):
        raise ValueError(f"init must be 'kmeans++' or 'course', got {init!r}")
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise ValueError(f"n_init must be an integer >= 1, got {n_init!r}")
    if not shrinkage >= 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage!r}")
    n, d = X.shape
    O = (X != 0).astype(np.float64)
    observed = X[X != 0]
    s2_0 = float(observed.var()) if observed.size > 1 else 1.0
    if not s2_0 > 0:  # every observed entry equal: start from unit variances (min_variance bounds the collapse)
        s2_0 = 1.0
    best, start_lls = None, []
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_init)]
    pats = _patterns(O) if covariance == "full" else None
    for start in range(n_init):
        if init == "course":
            m0, _ = course_init(X, K, seed + start)
            m = _as_diagonal(m0, d)._replace(covariance=covariance)
        else:
            mu = kmeanspp_means(X, K, rngs[start])
            m = DiagonalMixture(mu, np.full((K, d), s2_0), np.full(K, 1.0 / K), covariance)
        if covariance == "full":
            m = FullMixture(m.mu, np.stack([np.diag(v) for v in m.var]), m.p)
        prev, lls = None, []
        for _ in range(max_iter):
            if covariance == "full":
                post, ll, completions = _full_pass(X, pats, m)
            else:
                post, ll = _estep(X, O, m)
            lls.append(ll)
            if prev is not None and ll - prev <= tol * abs(ll):
                break
            prev = ll
            if covariance == "full":
                m = _full_mstep(post, _full_stats(post, pats, completions), min_variance, shrinkage, s2_0)
            else:
                m = _mstep(X, O, post, m, shrinkage, s2_0)
                m = m._replace(var=np.maximum(m.var, min_variance))
        start_lls.append(lls[-1])
        if best is None or lls[-1] > best.log_likelihood:
            best = FitResult(m, post, lls[-1], np.array(lls), np.array([]), len(lls))
    if not np.isfinite(best.log_likelihood) or not all(np.all(np.isfinite(a)) for a in best.mixture[:3]):
        raise DegenerateMixture(f"EM with missing entries (K={K}, {covariance}) ended with a non-finite "
                                f"log-likelihood or mixture (LL {best.log_likelihood})")
    return best._replace(start_lls=np.array(start_lls))


def impute(X: np.ndarray, mixture: GaussianMixture | DiagonalMixture) -> tuple[np.ndarray, np.ndarray]:
    """Posterior-predictive imputation of the missing entries (0 = missing).

    Given row u's observed entries, x_ui (missing) ~ sum_j r_uj N(mu_ji, s2_ji) (diagonal/spherical; for full
    covariances N(x_hat_uji, C_uj,ii) of eq. 5), so
        mean_ui = sum_j r_uj mu_ji,   var_ui = sum_j r_uj (s2_ji + mu_ji^2) - mean_ui^2.

    Returns:
        (filled (n, d): observed entries kept, missing ones replaced by their predictive mean;
         sd (n, d): predictive standard deviation, 0 on observed entries).
    """
    X = np.asarray(X, dtype=np.float64)
    O = (X != 0).astype(np.float64)
    missing = O == 0
    if isinstance(mixture, FullMixture):  # mixture over j of N(x_hat_uj, C_uj) on the missing block (eq. 5)
        pats = _patterns(O)
        post, _, completions = _full_pass(X, pats, mixture)
        mean, second = np.zeros_like(X), np.zeros_like(X)
        for (rows, _), per_j in zip(pats, completions):
            for j, (xhat, C) in enumerate(per_j):
                r = post[rows, j][:, None]
                mean[rows] += r * xhat
                second[rows] += r * (xhat ** 2 + np.diag(C)[None, :])
        var = np.maximum(second - mean ** 2, 0.0)
        return np.where(missing, mean, X), np.where(missing, np.sqrt(var), 0.0)
    m = _as_diagonal(mixture, X.shape[1])
    post, _ = _estep(X, O, m)
    mean = post @ m.mu
    var = np.maximum(post @ (m.var + m.mu ** 2) - mean ** 2, 0.0)
    return np.where(missing, mean, X), np.where(missing, np.sqrt(var), 0.0)
