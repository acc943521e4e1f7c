"""Exact EM with missing entries (models/gmm_missing.py eqs. 1-3), the course's EM vs scikit-learn,
k-means++ and predictive imputation. Reference values come from scikit-learn, scipy and code in this file."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from models.course import gmm
from models.mixture.em_missing import DiagonalMixture, fit_missing, impute, kmeanspp_means, log_likelihood
from models.datasets import load_netflix
from tests.conftest import have_data


def synthetic(n=120, d=5, K=3, missing=0.3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(3, 2, size=(K, d))
    z = rng.integers(K, size=n)
    X = mu[z] + rng.normal(0, 0.7, size=(n, d))
    X[np.abs(X) < 1e-9] = 1e-3  # 0 means missing: keep true zeros out
    X[rng.random((n, d)) < missing] = 0.0
    X[X.sum(1) == 0, 0] = 1.0
    return X


def brute_loglik(X, m):
    """sum_u log sum_j p_j prod_{i observed} N(x_ui; mu_ji, var_ji), with scipy, row by row."""
    total = 0.0
    for x in X:
        o = x != 0
        comps = [np.log(m.p[j]) + norm.logpdf(x[o], m.mu[j, o], np.sqrt(m.var[j, o])).sum() for j in range(len(m.p))]
        total += np.logaddexp.reduce(comps)
    return total


@pytest.mark.parametrize("cov", ["spherical", "diag"])
def test_estep_loglik_matches_brute_force(cov):
    X = synthetic()
    rng = np.random.default_rng(1)
    K, d = 3, X.shape[1]
    var = rng.uniform(0.5, 2, size=(K, d)) if cov == "diag" else np.repeat(rng.uniform(0.5, 2, K)[:, None], d, 1)
    m = DiagonalMixture(rng.normal(3, 2, (K, d)), var, np.array([0.2, 0.3, 0.5]), cov)
    assert log_likelihood(X, m) == pytest.approx(brute_loglik(X, m), rel=1e-12)


CONFIGS = [(cov, K, init, seed) for cov in ("spherical", "diag") for K in (1, 3, 5) for init in ("kmeans++", "course")
           for seed in (0, 1)]


@pytest.mark.parametrize("cov,K,init,seed", CONFIGS)
def test_exact_em_never_decreases(cov, K, init, seed):
    X = synthetic(seed=seed)
    fit = fit_missing(X, K, covariance=cov, init=init, seed=seed, tol=1e-12, max_iter=300)
    steps = np.diff(fit.trace)
    assert np.all(steps >= -1e-9 * np.abs(fit.trace[1:])), steps.min()
    assert fit.log_likelihood == pytest.approx(log_likelihood(X, fit.mixture), rel=1e-9) or fit.iterations == 300


def torch_observed_loglik(X, mu, log_var, p):
    """Observed-data LL written independently in torch (for autograd)."""
    X = torch.as_tensor(X)
    O = (X != 0).double()
    comp = -0.5 * (O[:, None, :] * (np.log(2 * np.pi) + log_var[None] + (X[:, None, :] - mu[None]) ** 2
                                     / torch.exp(log_var)[None])).sum(-1)
    return torch.logsumexp(torch.log(p)[None] + comp, dim=1).sum()


@pytest.mark.parametrize("cov", ["spherical", "diag"])
def test_em_fixed_point_is_a_stationary_point_of_the_observed_likelihood(cov):
    """At convergence of exact EM (eqs. 2-3) the gradient of the observed-data LL vanishes."""
    X = synthetic(n=80, d=4, K=2, seed=3)
    fit = fit_missing(X, 2, covariance=cov, seed=0, tol=1e-15, max_iter=5000)
    m = fit.mixture
    mu = torch.tensor(m.mu, requires_grad=True)
    log_var = torch.tensor(np.log(m.var), requires_grad=True)
    ll = torch_observed_loglik(X, mu, log_var, torch.tensor(m.p))
    g_mu, g_var = torch.autograd.grad(ll, [mu, log_var])
    assert float(g_mu.abs().max()) < 1e-5
    g = g_var.sum(1) if cov == "spherical" else g_var  # spherical: one shared variance per component
    assert float(g.abs().max()) < 1e-5
    # negative control: an unconverged mixture (3 EM steps) is not a stationary point
    early = fit_missing(X, 2, covariance=cov, seed=0, max_iter=3).mixture
    mu_e = torch.tensor(early.mu, requires_grad=True)
    ll_e = torch_observed_loglik(X, mu_e, torch.tensor(np.log(early.var)), torch.tensor(early.p))
    assert float(torch.autograd.grad(ll_e, [mu_e])[0].abs().max()) > 1e-2


def test_course_update_shares_the_fixed_point_of_exact_em():
    """Without its floor, the course's observed-only update stops where exact EM stops (module docstring)."""
    X = synthetic(n=80, d=4, K=2, seed=3)
    m0, _ = gmm.init(X, 2, 0)
    exact = fit_missing(X, 2, init="course", seed=0, tol=1e-15, max_iter=20000, min_variance=0.0)
    course = gmm.em_missing(X, m0, min_variance=0.0)
    assert course.objective == pytest.approx(exact.log_likelihood, rel=1e-5)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_course_em_matches_scikit_learn(K):
    """EM vs sklearn GaussianMixture (spherical, complete data, the same initial mixture, reg_covar=0)."""
    from sklearn.mixture import GaussianMixture as SkGMM

    if not have_data("netflix/toy_data.txt"):
        pytest.skip("toy data not available")
    X = load_netflix("toy")
    m0, _ = gmm.init(X, K, 0)
    n = len(X)
    # the course's stopping rule (LL gain <= 1e-6 |LL|) against sklearn's (mean LL gain < tol) at the same scale
    ours = gmm.em_complete(X, m0)
    sk = SkGMM(K, covariance_type="spherical", reg_covar=0.0, tol=1e-6 * abs(ours.objective) / n, max_iter=100000,
               means_init=m0.mu, weights_init=m0.p, precisions_init=1.0 / m0.var).fit(X)
    assert ours.objective == pytest.approx(sk.score(X) * n, rel=1e-6)
    # and both run to a tight convergence: the same optimum
    tight = fit_missing(X, K, covariance="spherical", init="course", seed=0, tol=1e-14, max_iter=100000,
                        min_variance=0.0)
    sk = SkGMM(K, covariance_type="spherical", reg_covar=0.0, tol=1e-14, max_iter=100000, means_init=m0.mu,
               weights_init=m0.p, precisions_init=1.0 / m0.var).fit(X)
    assert tight.log_likelihood == pytest.approx(sk.score(X) * n, rel=1e-9)
    np.testing.assert_allclose(np.sort(tight.mixture.mu[:, 0]), np.sort(sk.means_[:, 0]), rtol=1e-5, atol=1e-5)


def test_complete_data_reduces_to_the_course_em():
    X = synthetic(missing=0.0)
    m0, _ = gmm.init(X, 3, 2)
    course = gmm.em_complete(X, m0)
    ours = fit_missing(X, 3, covariance="spherical", init="course", seed=2)
    np.testing.assert_allclose(ours.trace, course.trace, rtol=1e-10)


def test_impute_mean_and_sd_match_monte_carlo():
    X = synthetic(seed=4)
    fit = fit_missing(X, 3, covariance="diag", seed=0)
    filled, sd = impute(X, fit.mixture)
    O = X != 0
    np.testing.assert_array_equal(filled[O], X[O])
    assert np.all(sd[O] == 0) and np.all(sd[~O] > 0)
    u = int(np.flatnonzero((~O).any(1))[0])
    i = int(np.flatnonzero(~O[u])[0])
    # predictive of x_ui: mixture of N(mu_ji, var_ji) with weights r_uj (computed here independently)
    m = fit.mixture
    o = O[u]
    logw = np.log(m.p) + np.array([norm.logpdf(X[u, o], m.mu[j, o], np.sqrt(m.var[j, o])).sum() for j in range(3)])
    w = np.exp(logw - np.logaddexp.reduce(logw))
    rng = np.random.default_rng(0)
    comp = rng.choice(3, size=200_000, p=w)
    draws = rng.normal(m.mu[comp, i], np.sqrt(m.var[comp, i]))
    assert filled[u, i] == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(len(draws)))
    assert sd[u, i] == pytest.approx(draws.std(), rel=0.01)


def test_kmeanspp_is_seeded_and_picks_distinct_rows():
    X = synthetic()
    a = kmeanspp_means(X, 4, np.random.default_rng(7))
    b = kmeanspp_means(X, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert len({tuple(r) for r in a}) == 4


def test_n_init_keeps_the_best_start():
    X = synthetic(seed=5)
    fit = fit_missing(X, 4, n_init=4, seed=0)
    assert len(fit.start_lls) == 4 and fit.log_likelihood == pytest.approx(fit.start_lls.max())


@pytest.mark.parametrize("kw,match", [({"covariance": "tied"}, "covariance"), ({"init": "random"}, "init"),
                                      ({"n_init": 0}, "n_init"), ({"shrinkage": -1.0}, "shrinkage")])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        fit_missing(synthetic(), 2, **kw)


# ---------------------------------------------------------------------------------------------------
# full covariances (eqs. 4-6)

from models.mixture.em_missing import FullMixture  # noqa: E402


def random_full(K=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(K, d, d))
    cov = A @ np.transpose(A, (0, 2, 1)) / d + 0.5 * np.eye(d)
    return FullMixture(rng.normal(3, 2, (K, d)), cov, np.array([0.2, 0.3, 0.5])[:K] / np.array([0.2, 0.3, 0.5])[:K].sum())


def test_full_estep_matches_scipy():
    from scipy.stats import multivariate_normal

    X = synthetic(n=40, d=4)
    m = random_full()
    brute = 0.0
    for x in X:
        o = x != 0
        comps = [np.log(m.p[j]) + multivariate_normal(m.mu[j, o], m.cov[j][np.ix_(o, o)]).logpdf(x[o]) for j in range(3)]
        brute += np.logaddexp.reduce(comps)
    assert log_likelihood(X, m) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("K,seed", [(1, 0), (2, 1), (3, 2)])
def test_full_em_never_decreases(K, seed):
    X = synthetic(n=100, d=4, seed=seed)
    fit = fit_missing(X, K, covariance="full", seed=seed, tol=1e-12, max_iter=200)
    steps = np.diff(fit.trace)
    assert np.all(steps >= -1e-9 * np.abs(fit.trace[1:])), steps.min()


def test_full_em_on_complete_data_matches_scikit_learn():
    from sklearn.mixture import GaussianMixture as SkGMM

    X = synthetic(n=150, d=3, missing=0.0, seed=6)
    fit = fit_missing(X, 3, covariance="full", seed=0, tol=1e-14, max_iter=20000, min_variance=1e-6)
    m0 = fit_missing(X, 3, covariance="full", seed=0, max_iter=1).mixture  # the same start
    sk = SkGMM(3, covariance_type="full", reg_covar=1e-6, tol=1e-14, max_iter=20000, means_init=m0.mu,
               weights_init=m0.p, precisions_init=np.linalg.inv(m0.cov)).fit(X)
    assert fit.log_likelihood == pytest.approx(sk.score(X) * len(X), rel=1e-8)


def test_full_em_fixed_point_is_stationary():
    X = synthetic(n=80, d=3, seed=8)
    fit = fit_missing(X, 2, covariance="full", seed=0, tol=1e-15, max_iter=20000, min_variance=0.0)
    m = fit.mixture
    mu = torch.tensor(m.mu, requires_grad=True)
    ll = 0.0
    for x in X:
        o = torch.tensor(x != 0)
        xo = torch.tensor(x)[o]
        comps = torch.stack([np.log(m.p[j]) + torch.distributions.MultivariateNormal(
            mu[j][o], torch.tensor(m.cov[j])[o][:, o]).log_prob(xo) for j in range(2)])
        ll = ll + torch.logsumexp(comps, 0)
    (g,) = torch.autograd.grad(ll, [mu])
    assert float(g.abs().max()) < 1e-5


def test_full_impute_matches_monte_carlo():
    X = synthetic(n=60, d=4, seed=9)
    m = random_full()
    filled, sd = impute(X, m)
    u = int(np.flatnonzero((X == 0).any(1))[0])
    o = X[u] != 0
    i = int(np.flatnonzero(~o)[0])
    from scipy.stats import multivariate_normal

    logw = np.array([np.log(m.p[j]) + multivariate_normal(m.mu[j, o], m.cov[j][np.ix_(o, o)]).logpdf(X[u, o])
                     for j in range(3)])
    w = np.exp(logw - np.logaddexp.reduce(logw))
    rng = np.random.default_rng(0)
    S = 200_000
    comp = rng.choice(3, size=S, p=w)
    draws = np.empty(S)
    for j in range(3):  # x_i | x_o within component j: the Gaussian conditional, written here with numpy
        idx = comp == j
        S_oo, S_io = m.cov[j][np.ix_(o, o)], m.cov[j][i, o]
        cm = m.mu[j, i] + S_io @ np.linalg.solve(S_oo, X[u, o] - m.mu[j, o])
        cv = m.cov[j][i, i] - S_io @ np.linalg.solve(S_oo, S_io)
        draws[idx] = rng.normal(cm, np.sqrt(cv), size=idx.sum())
    assert filled[u, i] == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(S))
    assert sd[u, i] == pytest.approx(draws.std(), rel=0.01)


def test_full_refuses_too_many_patterns(monkeypatch):
    import models.mixture.em_missing as gm

    monkeypatch.setattr(gm, "MAX_FULL_PATTERNS", 2)
    with pytest.raises(ValueError, match="missingness patterns"):
        fit_missing(synthetic(), 2, covariance="full")
