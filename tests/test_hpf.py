"""Hierarchical Poisson factorisation (models/poisson_mf/hierarchical.py, eqs. H1-H7). check_model
(tests/test_checks.py) verifies its conditionals against the Pyro model, each CAVI block's stationarity, the ELBO by Monte Carlo, the
guide and EM's fixed point; here, exact tests against Poisson MF in the limit where the hierarchy disappears: with
xi_n ~ Ga(c, c / b) and c -> infinity, xi_n is b, and HPF is PoissonMF with rate b."""

import math

import numpy as np
import pytest
import torch

from inference import fit_cavi, fit_em, fit_gibbs
from models import PoissonMF
from models.poisson_mf.hierarchical import HierarchicalPoissonMF, HPFCaviState, HPFParams

C = 1e9  # the activity's shape: q(xi) concentrates at c / d within O(1 / sqrt(c))


def pair(K=3, a_t=0.7, b_t=2.0, a_e=1.3, b_e=0.5):
    pmf = PoissonMF(K=K, a_theta=a_t, b_theta=b_t, a_eta=a_e, b_eta=b_e)
    hpf = HierarchicalPoissonMF(K=K, a_theta=a_t, c_theta=C, d_theta=C / b_t, a_eta=a_e, c_eta=C, d_eta=C / b_e)
    X = pmf.sample(6, 8, torch.Generator().manual_seed(2))[1]
    return pmf, hpf, X


def lift(hpf, q):
    """An HPF q with PoissonMF's q(theta), q(eta), q(z) and q(xi), q(delta) from eqs. H4, H6 at their means."""
    xs, xr = hpf.xi_conditional(q.theta_shape / q.theta_rate)
    ds, dr = hpf.delta_conditional(q.eta_shape / q.eta_rate)
    return HPFParams(q.theta_shape, q.theta_rate, xs, xr, q.eta_shape, q.eta_rate, ds, dr, q.phi_theta, q.phi_eta)


def test_elbo_reduces_to_poisson_mf_when_the_hierarchy_is_a_point_mass():
    """eq. H7 against PoissonMF's eq. 6 (tested separately) at the same q(theta), q(eta), q(z): a sign, a constant or
    an index wrong in the prior, entropy or z terms of H7 would leave a difference of order N K or more."""
    pmf, hpf, X = pair()
    data = pmf.prepare(X)
    state = pmf.cavi_init(data, torch.Generator().manual_seed(0))
    for _ in range(3):
        state, _ = pmf.cavi_update(data, state)
    q = state.params
    expected = float(pmf.elbo(data, q))
    got = float(hpf.elbo(data, lift(hpf, q)))
    # what is left: sum_n KL(q(xi_n) || p(xi_n)), O(K^2 a^2 / c) each, and float64 round-off on terms of size c
    assert got == pytest.approx(expected, abs=1e-3)
    # (the scale of what a dropped term would change: the theta prior's normaliser alone)
    assert abs(data.shape[0] * pmf.K * math.lgamma(0.7)) > 1.0


def test_one_cavi_sweep_is_poisson_mfs_sweep_in_the_limit():
    """eqs. H3 and H5 with E[xi] = b are eqs. 3 and 4: the same q(theta), q(eta) after a sweep, and the same ELBO."""
    pmf, hpf, X = pair()
    data = pmf.prepare(X)
    state = pmf.cavi_init(data, torch.Generator().manual_seed(1))
    h_state = HPFCaviState(lift(hpf, state.params), state.alloc)
    state, elbo = pmf.cavi_update(data, state)
    h_state, h_elbo = hpf.cavi_update(data, h_state)
    for name in ("theta_shape", "theta_rate", "eta_shape", "eta_rate"):
        np.testing.assert_allclose(getattr(h_state.params, name), getattr(state.params, name), rtol=1e-7)
    assert float(h_elbo) == pytest.approx(float(elbo), abs=1e-3)


def test_log_joint_is_poisson_mfs_plus_the_hierarchy():
    """log p(theta, xi, eta, delta, X) of eq. H1 against the same sum written with scipy's Poisson and Gamma
    densities over the dense N x M matrix."""
    from scipy import stats

    hpf = HierarchicalPoissonMF(K=2, a_theta=0.8, c_theta=2.0, d_theta=1.5, a_eta=1.2, c_eta=3.0, d_eta=0.7)
    state, X = hpf.simulate((3, 4), torch.Generator().manual_seed(5))
    data = hpf.prepare(X)
    theta, xi, eta, delta = (t.numpy() for t in state)
    D = data.to_dense().numpy()
    rates = theta @ eta.T
    expected = (stats.poisson.logpmf(D, rates).sum()
                + stats.gamma.logpdf(theta, 0.8, scale=1 / xi[:, None]).sum()
                + stats.gamma.logpdf(eta, 1.2, scale=1 / delta[:, None]).sum()
                + stats.gamma.logpdf(xi, 2.0, scale=1 / 1.5).sum()
                + stats.gamma.logpdf(delta, 3.0, scale=1 / 0.7).sum())
    assert float(hpf.log_joint(data, *state)) == pytest.approx(expected, rel=1e-12)
    # batched draws give the same values
    batch = [torch.stack([t, t]) for t in state]
    np.testing.assert_allclose(hpf.log_joint(data, *batch).numpy(), [expected, expected], rtol=1e-12)


def test_methods_run_and_cavi_is_monotone_with_every_site_in_the_result():
    hpf = HierarchicalPoissonMF(K=2)
    truth = PoissonMF(K=2, a_theta=1.0, b_theta=1.0, a_eta=1.0, b_eta=1.0)
    X = truth.sample(10, 12, torch.Generator().manual_seed(0))[1]
    cavi = fit_cavi(hpf, X, seed=0, num_iters=50, progress=False)
    assert cavi.attrs["monotone_violations"] == 0
    assert set(cavi.point) >= {"theta", "xi", "eta", "delta"} and np.asarray(cavi.point["xi"]).shape == (10,)
    gibbs = fit_gibbs(hpf, X, seed=0, num_samples=20, warmup=10, num_chains=2, progress=False)
    assert np.asarray(gibbs.posterior["delta"]).shape == (2, 20, 12)
    with pytest.raises(ValueError, match="a_theta or a_eta < 1"):
        fit_em(hpf, X, seed=0, num_iters=5, progress=False)


def test_bad_hyperparameters_are_refused_by_name():
    with pytest.raises(ValueError, match="c_theta must be a positive finite number"):
        HierarchicalPoissonMF(K=2, c_theta=0.0)
    with pytest.raises(ValueError, match="K must be an integer"):
        HierarchicalPoissonMF(K=0)
