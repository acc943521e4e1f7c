"""Gaussian MF (models/gaussian_mf.py eqs. 1-2): conditionals vs the Pyro model, sparse sums vs loops,
and the row sampler vs the exact Gaussian conditional. (Work in progress: CAVI/SVI checks come with them.)"""

import numpy as np
import pytest
import torch
import torch.distributions as td
from pyro import poutine

from models.gaussian_mf import GaussianMF, _gram_rhs, _sample_gaussian_rows, as_rating_data


def ratings(N=7, M=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.integers(1, 6, size=(N, M)).astype(float)
    A[rng.random((N, M)) < 0.4] = np.nan
    A[0, 0] = 4.0
    return as_rating_data(A)


def spd(K, g):
    A = torch.randn(K, K, generator=g, dtype=torch.float64)
    return A @ A.T / K + 0.5 * torch.eye(K, dtype=torch.float64)


def pyro_lp(model, data, **values):
    return poutine.trace(poutine.condition(model.model, data=values)).get_trace(data).log_prob_sum()


@pytest.mark.parametrize("prior,noise", [("fixed", None), ("bpmf", None), ("bpmf", (2.0, 1.5)), ("fixed", (3.0, 2.0))])
def test_log_joint_matches_pyro(prior, noise):
    model = GaussianMF(K=3, prior=prior, alpha=1.5, sigma_U=0.7, noise_prior=noise)
    data = ratings()
    g = torch.Generator().manual_seed(1)
    s = model.gibbs_init(data, g)
    for _ in range(3):
        s = model.gibbs_sweep(data, s, g)
    values = {"U": s.U, "V": s.V}
    if prior == "bpmf":
        values.update(mu_U=s.mu_U, Lambda_U=s.Lambda_U, mu_V=s.mu_V, Lambda_V=s.Lambda_V)
    if noise is not None:
        values["alpha"] = s.alpha
    torch.testing.assert_close(model.log_joint(data, *s), pyro_lp(model, data, **values), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("prior", ["fixed", "bpmf"])
@pytest.mark.parametrize("side", ["U", "V"])
def test_row_conditionals_eq1_vs_pyro(prior, side):
    model = GaussianMF(K=2, prior=prior, alpha=2.0)
    data = ratings()
    g = torch.Generator().manual_seed(2)
    N, M = data.shape
    other = torch.randn(M if side == "U" else N, 2, generator=g, dtype=torch.float64)
    if prior == "bpmf":
        hyper = {f"mu_{s}": torch.randn(2, generator=g, dtype=torch.float64) for s in "UV"}
        hyper.update({f"Lambda_{s}": spd(2, g) for s in "UV"})
        mu, Lam = hyper[f"mu_{side}"], hyper[f"Lambda_{side}"]
    else:
        hyper = {}
        mu, Lam = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64) / (model.sigma_U if side == "U" else model.sigma_V) ** 2
    P, b = model.row_conditional(data, other, mu, Lam, side)
    cond = td.MultivariateNormal(torch.linalg.solve(P, b[..., None])[..., 0], precision_matrix=P)
    diffs, bad = [], []
    wrong = td.MultivariateNormal(torch.linalg.solve(P, b[..., None])[..., 0], precision_matrix=P - Lam)  # prior dropped
    for _ in range(5):
        F = torch.randn(N if side == "U" else M, 2, generator=g, dtype=torch.float64)
        values = dict(hyper, **({"U": F, "V": other} if side == "U" else {"U": other, "V": F}))
        lp = pyro_lp(model, data, **values)
        diffs.append(lp - cond.log_prob(F).sum())
        bad.append(lp - wrong.log_prob(F).sum())
    d, w = torch.stack(diffs), torch.stack(bad)
    assert float(d.max() - d.min()) < 1e-9 * float(d.abs().max())
    assert float(w.max() - w.min()) > 1e-3


def test_normal_wishart_conditional_eq2_vs_pyro():
    model = GaussianMF(K=2, prior="bpmf", beta0=1.5, w0=0.8)
    data = ratings()
    g = torch.Generator().manual_seed(3)
    U = torch.randn(data.shape[0], 2, generator=g, dtype=torch.float64)
    V = torch.randn(data.shape[1], 2, generator=g, dtype=torch.float64)
    m, beta, W, nu = model.hyper_conditional(U)
    fixed_V = {"V": V, "mu_V": torch.zeros(2, dtype=torch.float64), "Lambda_V": torch.eye(2, dtype=torch.float64)}
    diffs = []
    for _ in range(5):
        Lam, mu = spd(2, g), torch.randn(2, generator=g, dtype=torch.float64)
        lp = pyro_lp(model, data, U=U, mu_U=mu, Lambda_U=Lam, **fixed_V)
        closed = (td.Wishart(torch.tensor(float(nu), dtype=torch.float64), covariance_matrix=W).log_prob(Lam)
                  + td.MultivariateNormal(m, precision_matrix=beta * Lam).log_prob(mu))
        diffs.append(lp - closed)
    d = torch.stack(diffs)
    assert float(d.max() - d.min()) < 1e-9 * float(d.abs().max())


def test_noise_precision_conditional_eq3_vs_pyro():
    model = GaussianMF(K=2, prior="fixed", noise_prior=(2.0, 1.0))
    data = ratings()
    g = torch.Generator().manual_seed(6)
    U = torch.randn(data.shape[0], 2, generator=g, dtype=torch.float64)
    V = torch.randn(data.shape[1], 2, generator=g, dtype=torch.float64)
    a, b = model.noise_conditional(data, U, V)
    diffs, bad = [], []
    for alpha in (0.3, 1.0, 2.5, 7.0):
        alpha = torch.tensor(alpha, dtype=torch.float64)
        lp = pyro_lp(model, data, U=U, V=V, alpha=alpha)
        diffs.append(lp - td.Gamma(a, b).log_prob(alpha))
        bad.append(lp - td.Gamma(a, b - 1.0).log_prob(alpha))  # negative control: prior rate dropped
    d, w = torch.stack(diffs), torch.stack(bad)
    assert float(d.max() - d.min()) < 1e-9 * float(d.abs().max())
    assert float(w.max() - w.min()) > 1e-3


def test_sparse_gram_matches_loops():
    data = ratings(N=9, M=8, seed=4)
    g = torch.Generator().manual_seed(4)
    V = torch.randn(8, 3, generator=g, dtype=torch.float64)
    resid = torch.randn(len(data), generator=g, dtype=torch.float64)
    gram, rhs = _gram_rhs(data, "U", V, resid)
    for i in range(9):
        sel = data.rows == i
        Vi = V[data.cols[sel]]
        torch.testing.assert_close(gram[i], Vi.T @ Vi)
        torch.testing.assert_close(rhs[i], Vi.T @ resid[sel])
    U = torch.randn(9, 3, generator=g, dtype=torch.float64)
    gram, rhs = _gram_rhs(data, "V", U, resid)
    for j in range(8):
        sel = data.cols == j
        Uj = U[data.rows[sel]]
        torch.testing.assert_close(gram[j], Uj.T @ Uj)
        torch.testing.assert_close(rhs[j], Uj.T @ resid[sel])


def test_row_sampler_matches_the_exact_gaussian():
    g = torch.Generator().manual_seed(5)
    P = torch.stack([spd(3, g), spd(3, g)])
    b = torch.randn(2, 3, generator=g, dtype=torch.float64)
    draws = torch.stack([_sample_gaussian_rows(P, b, g) for _ in range(20000)])
    mean = torch.linalg.solve(P, b[..., None])[..., 0]
    cov = torch.linalg.inv(P)
    se = torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1) / 20000)
    assert torch.all((draws.mean(0) - mean).abs() < 4.5 * se)
    emp = torch.stack([torch.cov(draws[:, r].T) for r in range(2)])
    torch.testing.assert_close(emp, cov, rtol=0.06, atol=0.01)


@pytest.mark.parametrize("bad,match", [(np.ones(3), "2-D"), (np.full((2, 2), np.nan), "no observed"),
                                       (np.array([[1.0, np.inf]]), "finite")])
def test_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        as_rating_data(bad)
    with pytest.raises(ValueError, match="prior"):
        GaussianMF(K=2, prior="lognormal")


# ---------------------------------------------------------------------------------------------------
# CAVI (eqs. 4-5), fixed prior

from inference import fit_cavi  # noqa: E402
from models.gaussian_mf import VBState  # noqa: E402


def random_vb(data, K, g):
    N, M = data.shape

    def covs(n):
        A = torch.randn(n, K, K, generator=g, dtype=torch.float64)
        return 0.05 * A @ A.transpose(-1, -2) + 0.02 * torch.eye(K, dtype=torch.float64)
    return VBState(torch.randn(N, K, generator=g, dtype=torch.float64), covs(N),
                   torch.randn(M, K, generator=g, dtype=torch.float64), covs(M))


@pytest.mark.parametrize("K,alpha,sigma", [(2, 1.0, 1.0), (3, 2.5, 0.6)])
def test_vb_elbo_eq5_matches_monte_carlo(K, alpha, sigma):
    model = GaussianMF(K=K, prior="fixed", alpha=alpha, sigma_U=sigma, sigma_V=1.3 * sigma)
    data = ratings()
    g = torch.Generator().manual_seed(7)
    st = random_vb(data, K, g)
    closed = float(model.vb_elbo(data, st))
    qU = td.MultivariateNormal(st.U_mean, covariance_matrix=st.U_cov)
    qV = td.MultivariateNormal(st.V_mean, covariance_matrix=st.V_cov)
    off = float(data.values.mean())
    vals = []
    for _ in range(4000):
        U, V = qU.sample(), qV.sample()
        pred = off + (U[data.rows] * V[data.cols]).sum(-1)
        lp = (td.Normal(pred, alpha ** -0.5).log_prob(data.values).sum()
              + td.Normal(torch.zeros((), dtype=torch.float64), model.sigma_U).log_prob(U).sum()
              + td.Normal(torch.zeros((), dtype=torch.float64), model.sigma_V).log_prob(V).sum())
        vals.append(float(lp - qU.log_prob(U).sum() - qV.log_prob(V).sum()))
    v = np.array(vals)
    assert abs(closed - v.mean()) < 4 * v.std(ddof=1) / np.sqrt(len(v))


@pytest.mark.parametrize("K,seed", [(1, 0), (2, 1), (4, 2)])
def test_cavi_elbo_never_decreases(K, seed):
    model = GaussianMF(K=K, prior="fixed", alpha=2.0, sigma_U=0.8, sigma_V=0.8)
    res = fit_cavi(model, ratings(N=12, M=10, seed=seed), seed=seed, num_iters=100, progress=False)
    e = res.trace["objective"]
    assert np.all(np.diff(e) >= -1e-9 * np.abs(e[1:])) and e[-1] > e[0]


def test_cavi_fixed_point_gradient_vanishes_for_the_updated_block():
    model = GaussianMF(K=2, prior="fixed", alpha=1.5)
    data = ratings()
    st = model.cavi_init(data, torch.Generator().manual_seed(0))
    for _ in range(3):
        st, _ = model.cavi_update(data, st)
    p = st.params
    U_mean, U_cov = model._update_side(data, "U", p.V_mean, p.V_cov, model.sigma_U)  # eq. 4 for q(U)
    Um = U_mean.clone().requires_grad_(True)
    L = torch.linalg.cholesky(U_cov).clone().requires_grad_(True)  # covariance through its Cholesky factor
    elbo = model.vb_elbo(data, VBState(Um, L @ L.transpose(-1, -2), p.V_mean, p.V_cov))
    gm, gL = torch.autograd.grad(elbo, [Um, L])
    assert float(gm.abs().max()) < 1e-9 * abs(float(elbo.detach()))
    assert float(torch.tril(gL).abs().max()) < 1e-8
    # negative control: the initial (random) q(U) mean is not a stationary point
    U0 = model.cavi_init(data, torch.Generator().manual_seed(0)).params.U_mean.clone().requires_grad_(True)
    elbo0 = model.vb_elbo(data, p._replace(U_mean=U0))
    assert float(torch.autograd.grad(elbo0, [U0])[0].abs().max()) > 1e-2


def test_cavi_refuses_bpmf_with_a_clear_error():
    with pytest.raises(ValueError, match="CAVI is implemented for prior='fixed'"):
        fit_cavi(GaussianMF(K=2), ratings(), seed=0, progress=False)
