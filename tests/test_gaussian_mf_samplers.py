"""Gibbs vs NUTS on a small synthetic Gaussian MF problem (ladder rung 6), and Gibbs mixing (R-hat).

U and V are not identifiable (any rotation U Q, V Q), so the samplers are compared on the predicted entries
U V^T of every cell, observed or not, and on their R-hat. Fixed prior with a Gamma prior on the noise precision
(NUTS samples U, V and alpha; the BPMF prior's Wishart sites have no NUTS bijection in torch).
"""

import numpy as np
import pytest

from inference import fit_gibbs, fit_nuts
from inference.results import mcse_mean, rhat
from models.gaussian_mf import GaussianMF, as_rating_data


@pytest.fixture(scope="module")
def small_problem():
    rng = np.random.default_rng(21)
    N, M, K = 6, 5, 2
    A = rng.normal(size=(N, K)) @ rng.normal(size=(M, K)).T + 0.5 * rng.normal(size=(N, M))
    A[rng.random((N, M)) < 0.35] = np.nan
    model = GaussianMF(K=K, prior="fixed", sigma_U=1.0, sigma_V=1.0, center=False, noise_prior=(3.0, 1.0))
    return model, as_rating_data(A)


def all_cells(res, shape):
    U, V = (np.asarray(res.posterior[k]) for k in ("U", "V"))
    return np.einsum("cdik,cdjk->cdij", U, V).reshape(U.shape[0], U.shape[1], shape[0] * shape[1])


@pytest.fixture(scope="module")
def gibbs_run(small_problem):
    model, data = small_problem
    return fit_gibbs(model, data, seed=1, num_samples=3000, warmup=500, num_chains=4, progress=False)


def test_gibbs_chains_mix_rhat_below_1_01_on_predictions(gibbs_run, small_problem):
    pred = all_cells(gibbs_run, small_problem[1].shape)
    r = rhat(pred)
    assert np.all(r < 1.01), f"max R-hat on U V^T {r.max():.4f}"
    assert float(rhat(gibbs_run.sample_stats["log_joint"])) < 1.01
    assert float(rhat(np.asarray(gibbs_run.posterior["alpha"]))) < 1.01


@pytest.mark.slow
def test_gibbs_and_nuts_agree_on_the_predicted_entries(small_problem, gibbs_run):
    model, data = small_problem
    nuts = fit_nuts(model, data, seed=2, num_samples=700, warmup=300, num_chains=2, jit=True, progress=False)
    g, n = all_cells(gibbs_run, data.shape), all_cells(nuts, data.shape)
    assert rhat(n).max() < 1.05
    z = (g.mean((0, 1)) - n.mean((0, 1))) / np.sqrt(mcse_mean(g) ** 2 + mcse_mean(n) ** 2)
    # 30 cells: all within 4.5 Monte Carlo standard errors, and the z-scores look standard
    assert np.abs(z).max() < 4.5, f"z-scores {np.round(z, 2)}"
    assert np.mean(z ** 2) < 3.0
    np.testing.assert_allclose(g.std((0, 1)), n.std((0, 1)), rtol=0.15)
    ga, na = np.asarray(gibbs_run.posterior["alpha"]), np.asarray(nuts.posterior["alpha"])
    za = (ga.mean() - na.mean()) / np.sqrt(mcse_mean(ga) ** 2 + mcse_mean(na) ** 2)
    assert abs(float(za)) < 4.5
