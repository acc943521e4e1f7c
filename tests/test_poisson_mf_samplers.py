"""Gibbs vs NUTS on a small synthetic Poisson MF problem (ladder rung 6) and Gibbs mixing (R-hat).

Factors are not identifiable (permutation and scaling of the K columns), so the comparison is on the
rates theta_n . eta_m and on the log joint.
"""

import numpy as np
import pytest
import torch

from inference import fit_gibbs, fit_nuts
from inference.results import mcse_mean, rhat
from models import PoissonMF


@pytest.fixture(scope="module")
def small_problem():
    model = PoissonMF(K=2, a_theta=2.0, b_theta=2.0, a_eta=2.0, b_eta=1.0)
    _, X = model.sample(5, 6, torch.Generator().manual_seed(11))
    return model, X


@pytest.fixture(scope="module")
def gibbs_run(small_problem):
    model, X = small_problem
    return fit_gibbs(model, X, seed=1, num_samples=3000, warmup=500, num_chains=4, progress=False)


def test_gibbs_chains_mix_rhat_below_1_01(gibbs_run):
    r_rate = rhat(gibbs_run.posterior["rate"])
    r_lj = rhat(gibbs_run.sample_stats["log_joint"])
    assert np.all(r_rate < 1.01), f"max R-hat on rates {r_rate.max():.4f}"
    assert float(r_lj) < 1.01


@pytest.mark.slow
def test_gibbs_and_nuts_agree_on_posterior_mean_rates(small_problem, gibbs_run):
    model, X = small_problem
    nuts = fit_nuts(model, X, seed=2, num_samples=600, warmup=300, num_chains=2, jit=True, progress=False)  # (JIT: 1.8x)
    g, n = gibbs_run.posterior["rate"], nuts.posterior["rate"]
    assert rhat(n).max() < 1.05
    z = (g.mean((0, 1)) - n.mean((0, 1))) / np.sqrt(mcse_mean(g) ** 2 + mcse_mean(n) ** 2)
    # 30 cells compared: all within 4.5 Monte Carlo standard errors, and the z-scores look standard
    assert np.abs(z).max() < 4.5, f"z-scores {np.round(z, 2)}"
    assert np.mean(z ** 2) < 3.0
    # the posterior sds agree too (a loose check: sds have larger Monte Carlo error)
    np.testing.assert_allclose(g.std((0, 1)), n.std((0, 1)), rtol=0.2)


def test_gibbs_prior_draws_are_explicitly_seeded(small_problem):
    model, X = small_problem
    a = fit_gibbs(model, X, seed=5, num_samples=5, warmup=2, num_chains=2, progress=False)
    b = fit_gibbs(model, X, seed=5, num_samples=5, warmup=2, num_chains=2, progress=False)
    c = fit_gibbs(model, X, seed=6, num_samples=5, warmup=2, num_chains=2, progress=False)
    np.testing.assert_array_equal(a.posterior["theta"], b.posterior["theta"])
    assert not np.array_equal(a.posterior["theta"], c.posterior["theta"])
    assert not np.array_equal(a.posterior["theta"][0], a.posterior["theta"][1])  # chains differ


def test_batched_chains_sample_the_same_posterior_as_sequential_chains(small_problem, gibbs_run):
    """The default run sweeps its 4 chains as one batch; one-chain-at-a-time runs must agree within Monte Carlo
    error (and the batched log joint must equal the draw-by-draw one)."""
    model, X = small_problem
    assert gibbs_run.attrs["batched_chains"] is True
    seq = fit_gibbs(model, X, seed=7, num_samples=3000, warmup=500, num_chains=4, batched=False, progress=False)
    assert "batched_chains" not in seq.attrs
    g, s = gibbs_run.posterior["rate"], seq.posterior["rate"]
    z = (g.mean((0, 1)) - s.mean((0, 1))) / np.sqrt(mcse_mean(g) ** 2 + mcse_mean(s) ** 2)
    assert np.abs(z).max() < 4.5 and np.mean(z ** 2) < 3.0, np.round(z, 2)
    theta = torch.as_tensor(np.asarray(gibbs_run.posterior["theta"]))[:, :7]
    eta = torch.as_tensor(np.asarray(gibbs_run.posterior["eta"]))[:, :7]
    looped = torch.stack([model.log_joint(model.prepare(X), t, e) for t, e in zip(theta.flatten(0, 1), eta.flatten(0, 1))])
    np.testing.assert_allclose(model.log_joint(model.prepare(X), theta, eta).flatten(), looped, rtol=1e-12)
    with pytest.raises(ValueError, match="cannot sweep chains as one batch"):
        from models import BayesGMM
        fit_gibbs(BayesGMM(K=2), np.zeros((5, 2)), seed=0, num_samples=2, batched=True, progress=False)


def test_nuts_chains_in_processes_are_the_sequential_chains():
    """fit_nuts(processes=2) runs each chain in a spawned process from the same per-chain seed: the same draws as
    one after another (a chain given another chain's seed, or the same seed twice, would differ)."""
    from inference import fit_nuts

    model = PoissonMF(K=2)
    _, X = model.sample(5, 4, torch.Generator().manual_seed(0))
    kw = dict(seed=3, num_samples=15, warmup=15, num_chains=2, progress=False)
    one_by_one, parallel = fit_nuts(model, X, **kw), fit_nuts(model, X, processes=2, **kw)
    assert parallel.attrs["processes"] == 2 and one_by_one.attrs["processes"] == 1
    # the CPU time of the chains is the chain processes' (this process only waits); in-process runs leave it unset
    assert parallel.attrs["cpu_seconds"] > 0 and "cpu_seconds" not in one_by_one.attrs
    for k in ("theta", "eta", "rate"):
        np.testing.assert_allclose(parallel.posterior[k], one_by_one.posterior[k], rtol=1e-10)
    assert not np.allclose(parallel.posterior["rate"][0], parallel.posterior["rate"][1])
    with pytest.raises(ValueError, match="processes must be an integer >= 0"):
        fit_nuts(model, X, processes=-1, **kw)
