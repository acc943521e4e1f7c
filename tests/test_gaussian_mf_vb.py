"""Variational Bayesian MF (models/gaussian_mf/vb.py eqs. 4-8), for the fixed and the BPMF prior, with and
without a noise prior: the closed-form ELBO against Monte Carlo from the log joint (itself checked against the
Pyro model) and against Pyro's TraceMeanField_ELBO; monotone CAVI; each block update a stationary point."""

import numpy as np
import pytest
import torch
import torch.distributions as td
from pyro.infer import TraceMeanField_ELBO

from inference import fit_cavi, fit_svi
from gmf_helpers import ratings, spd
from models.gaussian_mf import GaussianMF, VBState

CONFIGS = [dict(prior="fixed"), dict(prior="fixed", noise_prior=(2.0, 1.0)), dict(prior="bpmf"),
           dict(prior="bpmf", noise_prior=(3.0, 1.5))]
IDS = ["fixed", "fixed+noise", "bpmf", "bpmf+noise"]


def random_q(model, data, g):
    """A random q in the family (not a CAVI fixed point)."""
    N, M = data.shape
    K = model.K

    def covs(n):
        A = torch.randn(n, K, K, generator=g, dtype=torch.float64)
        return 0.05 * A @ A.transpose(-1, -2) + 0.02 * torch.eye(K, dtype=torch.float64)
    f64 = dict(dtype=torch.float64)
    st = VBState(torch.randn(N, K, generator=g, **f64), covs(N), torch.randn(M, K, generator=g, **f64), covs(M))
    if model.prior == "bpmf":
        for side in "UV":
            st = st._replace(**{"m" + side: 0.3 * torch.randn(K, generator=g, **f64),
                                "beta" + side: torch.tensor(3.0 + float(torch.rand(1, generator=g)), **f64),
                                "W" + side: spd(K, g, 0.2), "nu" + side: torch.tensor(K + 4.5, **f64)})
    if model.noise_prior is not None:
        st = st._replace(a_alpha=torch.tensor(6.0, **f64), b_alpha=torch.tensor(3.5, **f64))
    return st


def log_q(model, st, draws):
    """log q of the draws, written with torch.distributions (independent of the code under test)."""
    lq = (td.MultivariateNormal(st.U_mean, covariance_matrix=st.U_cov).log_prob(draws["U"]).sum(-1)
          + td.MultivariateNormal(st.V_mean, covariance_matrix=st.V_cov).log_prob(draws["V"]).sum(-1))
    if model.prior == "bpmf":
        for side in "UV":
            m, beta, W, nu = (getattr(st, p + side) for p in ("m", "beta", "W", "nu"))
            Lam = draws["Lambda_" + side]
            lq = lq + td.Wishart(nu, covariance_matrix=W).log_prob(Lam)
            lq = lq + td.MultivariateNormal(m, precision_matrix=beta * Lam).log_prob(draws["mu_" + side])
    if model.noise_prior is not None:
        lq = lq + td.Gamma(st.a_alpha, st.b_alpha).log_prob(draws["alpha"])
    return lq


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_vb_elbo_eq8_matches_monte_carlo_of_the_log_joint(kw):
    model = GaussianMF(K=2, alpha=1.3, sigma_U=0.8, sigma_V=1.1, beta0=1.5, w0=0.7, **kw)
    data = ratings()
    g = torch.Generator().manual_seed(11)
    st = random_q(model, data, g)
    closed = float(model.vb_elbo(data, st))
    draws = st.sample(3000, g)
    lj = model.log_joint(data, draws["U"], draws["V"], draws.get("mu_U"), draws.get("Lambda_U"), draws.get("mu_V"),
                         draws.get("Lambda_V"), draws.get("alpha"))
    v = (lj - log_q(model, st, draws)).numpy()
    assert abs(closed - v.mean()) < 4 * v.std(ddof=1) / np.sqrt(len(v))
    # negative control: the entropy of q(U) with log|Phi_i| of the wrong sign would be detected
    logdet = float(torch.logdet(st.U_cov).sum())
    assert abs(closed - logdet - v.mean()) > 4 * v.std(ddof=1) / np.sqrt(len(v))


@pytest.mark.parametrize("noise", [None, (2.0, 1.0)], ids=["alpha fixed", "alpha ~ Gamma"])
def test_vb_elbo_matches_pyro_trace_mean_field_elbo(noise):
    """Pyro's TraceMeanField_ELBO of the model and the SVI guide (analytic KL for U, V and alpha, one-particle
    likelihood term), averaged over many particles, equals the closed-form ELBO at the same q."""
    model = GaussianMF(K=2, prior="fixed", alpha=1.3, sigma_U=0.8, sigma_V=1.1, noise_prior=noise)
    data = ratings()
    g = torch.Generator().manual_seed(12)
    params = model.guide_init(data, g)
    params["U_mean"], params["V_mean"] = (torch.randn(p.shape, generator=g, dtype=torch.float64)
                                          for p in (params["U_mean"], params["V_mean"]))
    params["U_tril"] = torch.linalg.cholesky(random_q(model, data, g).U_cov)
    closed = float(model.elbo(data, model.family.from_guide(params)))
    torch.manual_seed(0)
    single = TraceMeanField_ELBO(num_particles=1)
    per = np.array([-single.loss(model.model, lambda d: model.guide(d, params), data) for _ in range(1500)])
    se = per.std(ddof=1) / np.sqrt(len(per))
    assert abs(closed - per.mean()) < 4 * se
    # negative control: dropping the entropy-like trace term of q(U) from the ELBO is detectable at this SE
    assert float(torch.diagonal(params["U_tril"] @ params["U_tril"].transpose(-1, -2), dim1=-2, dim2=-1).sum()) \
        * 0.5 / model.sigma_U ** 2 > 4 * se


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("K,seed", [(1, 0), (3, 1)])
def test_cavi_elbo_never_decreases(kw, K, seed):
    model = GaussianMF(K=K, alpha=2.0, sigma_U=0.8, sigma_V=0.8, **kw)
    res = fit_cavi(model, ratings(N=12, M=10, seed=seed), seed=seed, num_iters=100, progress=False)
    e = np.asarray(res.trace["objective"])
    assert np.all(np.diff(e) >= -1e-10 * np.abs(e[1:])) and e[-1] > e[0] + 1.0
    assert res.attrs["monotone_violations"] == 0


def _grad_at(model, data, st, names, transform):
    """Gradient of the ELBO with respect to the (transformed) blocks ``names`` at st."""
    leaves = {k: transform[k][0](getattr(st, k)).clone().requires_grad_(True) for k in names}
    elbo = model.vb_elbo(data, st._replace(**{k: transform[k][1](v) for k, v in leaves.items()}))
    return elbo, dict(zip(names, torch.autograd.grad(elbo, list(leaves.values()))))


CHOL = (torch.linalg.cholesky, lambda L: torch.tril(L) @ torch.tril(L).transpose(-1, -2))
IDENT = (lambda x: x, lambda x: x)


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_each_block_update_is_a_stationary_point_of_the_elbo(kw):
    """After eq. 4 (q(U)), eq. 6 (q(mu_V, Lambda_V)) and eq. 7 (q(alpha)), the ELBO's gradient in that block's
    parameters vanishes; at a random q it does not (negative control)."""
    model = GaussianMF(K=2, alpha=1.5, **kw)
    data = ratings()
    g = torch.Generator().manual_seed(0)
    st = random_q(model, data, g)
    transform = {"U_mean": IDENT, "U_cov": CHOL, "mV": IDENT, "betaV": IDENT, "WV": CHOL, "nuV": IDENT,
                 "a_alpha": IDENT, "b_alpha": IDENT}
    blocks = [("U_mean", "U_cov")]
    if model.prior == "bpmf":
        blocks.append(("mV", "betaV", "WV", "nuV"))
    if model.noise_prior is not None:
        blocks.append(("a_alpha", "b_alpha"))
    for names in blocks:
        elbo0, g0 = _grad_at(model, data, st, names, transform)
        assert max(float(v.abs().max()) for v in g0.values()) > 1e-3  # the random q is not stationary
        if names[0] == "U_mean":
            upd = dict(zip(names, model.vb_update_factors(data, st, "U")))
        elif names[0] == "mV":
            upd = dict(zip(names, model.vb_update_hyper(st.V_mean, st.V_cov)))
        else:
            upd = dict(zip(names, model.vb_update_noise(data, st)))
        new = st._replace(**upd)
        elbo1, g1 = _grad_at(model, data, new, names, transform)
        assert float(elbo1.detach()) > float(elbo0.detach())
        for k, v in g1.items():
            v = torch.tril(v) if transform[k] is CHOL else v  # only the Cholesky factor's lower triangle is free
            assert float(v.abs().max()) < 1e-7 * max(1.0, abs(float(elbo1))), (names, k)


@pytest.mark.slow
@pytest.mark.parametrize("noise", [None, (2.0, 1.0)], ids=["alpha fixed", "alpha ~ Gamma"])
def test_svi_approaches_the_cavi_optimum_from_below(noise):
    model = GaussianMF(K=2, prior="fixed", alpha=1.5, noise_prior=noise)
    data = ratings(N=12, M=10, seed=3)
    cavi = fit_cavi(model, data, seed=0, num_iters=300, progress=False)
    svi = fit_svi(model, data, seed=0, num_iters=1500, lr=0.02, num_particles=2, eval_every=500, progress=False)
    e_cavi, e_svi = cavi.attrs["elbo"], svi.attrs["elbo"]
    assert e_svi <= e_cavi + 1e-6 * abs(e_cavi)  # CAVI's fixed point is (locally) optimal in the family
    assert e_svi > e_cavi - 0.02 * abs(e_cavi), (e_svi, e_cavi)


def test_minibatch_svi_records_the_closed_form_elbo_and_a_monitor_each_epoch():
    model = GaussianMF(K=2, prior="fixed", alpha=1.5)
    data = ratings(N=12, M=10, seed=3)
    train, test = model.split(data, 0.2, torch.Generator().manual_seed(0))
    res = fit_svi(model, train, seed=0, num_iters=60, subsample_size=20, eval_every=5, lr=0.05, progress=False,
                  monitor=lambda q: {"test_nll": model.test_nll(train, q, test)})
    nll = np.asarray(res.trace["test_nll"])
    elbo = np.asarray(res.trace["elbo"])
    assert nll.shape == elbo.shape == (61,)
    assert np.isfinite(nll[::5]).all() and np.isnan(nll[1:5]).all()
    assert np.isfinite(elbo[::5]).all() and elbo[-1] > elbo[0]
    with pytest.raises(ValueError, match="subsample_size"):
        from models.poisson_mf import PoissonMF
        fit_svi(PoissonMF(K=2), np.ones((3, 3)), seed=0, subsample_size=2, progress=False)


def test_svi_refuses_bpmf_with_a_clear_error():
    with pytest.raises(ValueError, match="SVI is implemented for prior='fixed'"):
        fit_svi(GaussianMF(K=2), ratings(), seed=0, num_iters=1, progress=False)


def _norm_logpdf(x, mean, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((x - mean) / sd) ** 2


def test_sampled_nll_is_the_monte_carlo_log_mean_density_of_q_draws():
    """The course's "NLL from 100 posterior draws", checked against a NumPy computation on the same draws, and
    against the plain Gaussian log-likelihood when q is (nearly) a point mass."""
    from models.gaussian_mf import GaussianMF, VBState, sampled_nll

    data = ratings()
    model = GaussianMF(K=2, prior="fixed", alpha=2.0)
    g = torch.Generator().manual_seed(3)
    N, M = data.shape
    q = VBState(torch.randn(N, 2, generator=g, dtype=torch.float64), 0.3 * torch.eye(2, dtype=torch.float64).expand(N, 2, 2),
                torch.randn(M, 2, generator=g, dtype=torch.float64), 0.2 * torch.eye(2, dtype=torch.float64).expand(M, 2, 2))
    draws = q.sample(50, torch.Generator().manual_seed(9))
    off = float(model.offset(data))
    r, c, x = data.rows.numpy(), data.cols.numpy(), data.values.numpy()
    dens = np.stack([np.exp(_norm_logpdf(x, off + (U[r] * V[c]).sum(-1), 1 / np.sqrt(2.0)))
                     for U, V in zip(draws["U"].numpy(), draws["V"].numpy())])
    expected = -np.mean(np.log(dens.mean(0)))
    got = sampled_nll(model, data, q, data, num_draws=50, generator=torch.Generator().manual_seed(9), chunk=50)
    assert got == pytest.approx(expected, rel=1e-12)
    point = q._replace(U_cov=1e-22 * q.U_cov, V_cov=1e-22 * q.V_cov)
    plain = -np.mean(_norm_logpdf(x, off + (q.U_mean.numpy()[r] * q.V_mean.numpy()[c]).sum(-1), 1 / np.sqrt(2.0)))
    assert sampled_nll(model, data, point, data, num_draws=30, chunk=7) == pytest.approx(plain, rel=1e-9)


def test_running_predictive_averages_densities_over_draws_not_log_densities():
    from models.gaussian_mf import GaussianMF, RunningPredictive

    data = ratings(seed=1)
    model = GaussianMF(K=2, prior="fixed", noise_prior=(1.0, 1.0))
    g = torch.Generator().manual_seed(0)
    N, M = data.shape
    draws = [(torch.randn(N, 2, generator=g, dtype=torch.float64), torch.randn(M, 2, generator=g, dtype=torch.float64),
              torch.tensor(a, dtype=torch.float64)) for a in (0.5, 3.0)]
    run = RunningPredictive(model, data, data)
    off = float(model.offset(data))
    r, c, x = data.rows.numpy(), data.cols.numpy(), data.values.numpy()
    logp = [_norm_logpdf(x, off + (U.numpy()[r] * V.numpy()[c]).sum(-1), 1 / np.sqrt(float(a))) for U, V, a in draws]
    at1, lpd1 = run.update(*draws[0])
    assert at1 == pytest.approx(logp[0].mean(), rel=1e-12) and lpd1 == pytest.approx(at1, rel=1e-12)
    at2, lpd2 = run.update(*draws[1])
    assert at2 == pytest.approx(logp[1].mean(), rel=1e-12)
    assert lpd2 == pytest.approx(np.mean(np.log((np.exp(logp[0]) + np.exp(logp[1])) / 2)), rel=1e-12)
