"""Gaussian MF (models/gaussian_mf/model.py eqs. 1-3): conditionals vs the Pyro model, the Normal-Wishart conditional
vs brute-force quadrature, sparse sums vs loops, the row sampler vs the exact Gaussian conditional.
The variational derivations (eqs. 4-8) are in test_gaussian_mf_vb.py, samplers vs NUTS in test_gaussian_mf_samplers.py."""

import numpy as np
import pytest
import torch
import torch.distributions as td
from pyro import poutine

from gmf_helpers import ratings, spd
from models.conjugate import sample_gaussian_precision
from models.gaussian_mf import GaussianMF, as_rating_data
from models.data import gram_rhs, partner_sum


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
    gram, rhs = gram_rhs(data, "U", V, resid)
    for i in range(9):
        sel = data.rows == i
        Vi = V[data.cols[sel]]
        torch.testing.assert_close(gram[i], Vi.T @ Vi)
        torch.testing.assert_close(rhs[i], Vi.T @ resid[sel])
    U = torch.randn(9, 3, generator=g, dtype=torch.float64)
    gram, rhs = gram_rhs(data, "V", U, resid)
    for j in range(8):
        sel = data.cols == j
        Uj = U[data.rows[sel]]
        torch.testing.assert_close(gram[j], Uj.T @ Uj)
        torch.testing.assert_close(rhs[j], Uj.T @ resid[sel])


def test_row_sampler_matches_the_exact_gaussian():
    g = torch.Generator().manual_seed(5)
    P = torch.stack([spd(3, g), spd(3, g)])
    b = torch.randn(2, 3, generator=g, dtype=torch.float64)
    draws = torch.stack([sample_gaussian_precision(P, g, linear=b) for _ in range(20000)])
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


def test_ratings_outside_the_declared_range_are_refused():
    A = np.array([[1.0, 6.0], [np.nan, 3.0]])
    with pytest.raises(ValueError, match=r"rating 6 \(row 0, col 1\) is outside the declared range 1..5"):
        as_rating_data(A, rating_range=(1, 5))
    assert len(as_rating_data(A, rating_range=(1, 6))) == 3
    with pytest.raises(ValueError, match="indices outside"):
        as_rating_data(as_rating_data(A), shape=(1, 2)) if False else as_rating_data(
            type("R", (), {"rows": [0, 2], "cols": [0, 1], "values": [1.0, 2.0], "shape": (2, 2)})())


def test_partner_sum_matches_loops():
    data = ratings(N=9, M=8, seed=4)
    g = torch.Generator().manual_seed(9)
    C = torch.randn(8, 3, 3, generator=g, dtype=torch.float64)
    out = partner_sum(data, "U", C)
    for i in range(9):
        torch.testing.assert_close(out[i], C[data.cols[data.rows == i]].sum(0))
    D = torch.randn(9, 2, generator=g, dtype=torch.float64)
    out = partner_sum(data, "V", D)
    for j in range(8):
        torch.testing.assert_close(out[j], D[data.rows[data.cols == j]].sum(0))


def test_normal_wishart_conditional_eq2_vs_brute_force_quadrature():
    """K = 1: normalise p(mu, lambda | u) on a grid from the log joint alone (checked against the Pyro model in
    test_log_joint_matches_pyro) and compare it with the Normal-Wishart density of eq. 2 (W(w, nu) is
    Ga(nu / 2, rate 1 / (2 w)) in one dimension)."""
    model = GaussianMF(K=1, prior="bpmf", beta0=0.7, w0=1.3)
    data = ratings(N=5, M=4, seed=2)
    g = torch.Generator().manual_seed(8)
    U = 0.8 * torch.randn(5, 1, generator=g, dtype=torch.float64) + 0.6
    V = torch.randn(4, 1, generator=g, dtype=torch.float64)
    mus = torch.linspace(-2.5, 3.5, 91, dtype=torch.float64)
    lams = torch.linspace(1e-3, 6.0, 90, dtype=torch.float64)
    mu_V, Lam_V = torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64)
    lp = torch.tensor([[float(model.log_joint(data, U, V, mu.reshape(1), lam.reshape(1, 1), mu_V, Lam_V))
                        for lam in lams] for mu in mus], dtype=torch.float64)
    cell = (mus[1] - mus[0]) * (lams[1] - lams[0])
    brute = torch.exp(lp - lp.max())
    brute = brute / (brute.sum() * cell)
    m, beta, W, nu = model.hyper_conditional(U)
    closed = torch.exp(td.Gamma(nu / 2, 1 / (2 * W[0, 0])).log_prob(lams)[None, :]
                       + td.Normal(m[0], 1 / torch.sqrt(beta * lams)[None, :]).log_prob(mus[:, None]))
    assert float(closed.sum() * cell) > 0.95  # the grid holds most of the mass; both normalised on it
    closed = closed / (closed.sum() * cell)
    assert float((brute - closed).abs().max()) < 1e-6 * float(closed.max())
    # negative control: the same density with the prior's beta0 dropped from beta* must be told apart
    wrong = torch.exp(td.Gamma(nu / 2, 1 / (2 * W[0, 0])).log_prob(lams)[None, :]
                      + td.Normal(m[0], 1 / torch.sqrt((beta - model.beta0) * lams)[None, :]).log_prob(mus[:, None]))
    wrong = wrong / (wrong.sum() * cell)
    assert float((brute - wrong).abs().max()) > 1e-2 * float(closed.max())


def test_gibbs_row_draws_match_the_exact_conditional_of_U_given_V_from_autograd():
    """With V and the hyperparameters held fixed, the Gibbs draws of U must follow the Gaussian whose precision
    and mean come from the Hessian and gradient of the Pyro log joint in vec(U) (no use of eq. 1)."""
    model = GaussianMF(K=2, prior="fixed", alpha=1.7, sigma_U=0.9)
    data = ratings(N=4, M=5, seed=3)
    g = torch.Generator().manual_seed(4)
    V = torch.randn(5, 2, generator=g, dtype=torch.float64)

    def f(u):
        return pyro_lp(model, data, U=u.reshape(4, 2), V=V)
    zero = torch.zeros(8, dtype=torch.float64)
    H = torch.autograd.functional.hessian(f, zero)
    grad = torch.autograd.functional.jacobian(f, zero)
    prec = -H
    mean = torch.linalg.solve(prec, grad)
    cov = torch.linalg.inv(prec)
    mu, Lam = model._fixed_hyper(model.sigma_U, torch.float64)
    S = 20000
    P, b = model.row_conditional(data, V, mu, Lam, "U")
    draws = torch.stack([sample_gaussian_precision(P, g, linear=b).reshape(8) for _ in range(S)])
    se = torch.sqrt(torch.diagonal(cov) / S)
    assert torch.all((draws.mean(0) - mean).abs() < 4.5 * se)
    torch.testing.assert_close(torch.cov(draws.T), cov, rtol=0.06, atol=0.01)
