"""Derivation checks for Poisson-gamma MF (docs/ARCHITECTURE.md verification ladder, rungs 2-5).

Each test names the equation of models/poisson_mf/model.py it checks. Reference values are computed here by
independent code (torch.distributions, dense N x M x K loops), never by the code under test.
"""

from functools import partial

import numpy as np
import pytest
import torch
import torch.distributions as td
from pyro import poutine

from inference import fit_cavi
from models import PoissonMF
from models.conjugate import sample_multinomial
from models.poisson_mf import PoissonMFParams
from models.poisson_mf.vb import CaviState

CONFIGS = [  # (N, M, K, a_theta, b_theta, a_eta, b_eta, seed)
    (6, 7, 2, 1.0, 1.0, 1.0, 1.0, 0),
    (9, 5, 3, 0.5, 2.0, 2.0, 0.5, 1),
    (12, 15, 4, 0.3, 0.3, 0.7, 1.5, 2),
]


def problem(cfg, dtype=torch.float64):
    N, M, K, at, bt, ae, be, seed = cfg
    model = PoissonMF(K=K, a_theta=at, b_theta=bt, a_eta=ae, b_eta=be)
    g = torch.Generator().manual_seed(seed)
    # latents with enough mass for a dense draw of counts
    theta = td.Gamma(torch.full((N, K), 2.0, dtype=dtype), 1.0).sample()
    eta = td.Gamma(torch.full((M, K), 2.0, dtype=dtype), 1.0).sample()
    X = torch.poisson(theta @ eta.T, generator=g)
    X[0, 0] = X[0, 0] + 1
    X[:, -1] = 0  # an empty column and
    X[-1, :] = 0  # an empty row are legal
    return model, model.prepare(X.numpy()), g


@pytest.fixture(autouse=True)
def _seed():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        yield


def G(a, b):
    """A float64 Gamma (python floats would make float32 parameters)."""
    return td.Gamma(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))


def random_latents(model, X):
    N, M = X.shape
    return (td.Gamma(torch.full((N, model.K), 1.5, dtype=torch.float64), 1.0).sample(),
            td.Gamma(torch.full((M, model.K), 1.5, dtype=torch.float64), 1.0).sample())


def pyro_log_joint(fn, data, **values):
    tr = poutine.trace(poutine.condition(fn, data=values)).get_trace(data)
    return tr.log_prob_sum()


def mult_log_pmf(z, x, p):
    """log Mult(z; x, p) per row, written out independently of the library."""
    return torch.lgamma(x + 1) - torch.lgamma(z + 1).sum(-1) + torch.xlogy(z, p).sum(-1)


def assert_constant(diffs, what):
    d = torch.stack(diffs).detach()
    spread = float(d.max() - d.min())
    assert spread < 1e-8 * max(1.0, float(d.abs().max())), f"{what}: differences not constant (spread {spread})"


def assert_not_constant(diffs, what):
    d = torch.stack(diffs).detach()
    assert float(d.max() - d.min()) > 1e-3, f"{what}: the negative control was not detected"


# --------------------------------------------------------------------------------------------------
# rung 2: closed-form conditionals vs the Pyro model's log joint


@pytest.mark.parametrize("cfg", CONFIGS)
def test_log_joint_matches_pyro_collapsed_model_and_dense_poisson(cfg):
    model, X, g = problem(cfg)
    theta, eta = random_latents(model, X)
    closed = model.log_joint(X, theta, eta)
    pyro_lp = pyro_log_joint(model.model, X, theta=theta, eta=eta)
    dense = (G(model.a_theta, model.b_theta).log_prob(theta).sum()
             + G(model.a_eta, model.b_eta).log_prob(eta).sum()
             + td.Poisson(theta @ eta.T).log_prob(X.to_dense()).sum())
    torch.testing.assert_close(closed, dense, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(pyro_lp, dense, rtol=1e-12, atol=1e-9)
    # one draw takes the sampled sparse product, a batch of draws the gathered one: the same values
    batch = model.log_joint(X, torch.stack([theta, 2 * theta]), torch.stack([eta, eta / 3]))
    torch.testing.assert_close(batch, torch.stack([closed, model.log_joint(X, 2 * theta, eta / 3)]),
                               rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_z_conditional_is_multinomial_eq2(cfg):
    model, X, g = problem(cfg)
    theta, eta = random_latents(model, X)
    p = model.z_conditional(X, theta, eta)
    wrong = model.z_conditional(X, theta, eta.flip(0))  # negative control: an index error
    diffs, bad = [], []
    for _ in range(6):
        z = sample_multinomial(X.values, torch.rand(X.nnz, model.K, dtype=torch.float64), g)
        lp = pyro_log_joint(model.augmented_model, X, theta=theta, eta=eta, z=z)
        diffs.append(lp - mult_log_pmf(z, X.values, p).sum())
        bad.append(lp - mult_log_pmf(z, X.values, wrong).sum())
    assert_constant(diffs, "z | theta, eta")
    assert_not_constant(bad, "z conditional with permuted eta")


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("block", ["theta", "eta"])
def test_gamma_conditionals_eq3_eq4(cfg, block):
    model, X, g = problem(cfg)
    N, M = X.shape
    K = model.K
    theta, eta = random_latents(model, X)
    z = sample_multinomial(X.values, model.z_conditional(X, theta, eta), g)
    z_theta = torch.zeros(N, K, dtype=torch.float64).index_add(0, X.rows, z)
    z_eta = torch.zeros(M, K, dtype=torch.float64).index_add(0, X.cols, z)
    diffs, bad = [], []
    for _ in range(6):
        if block == "theta":
            theta = td.Gamma(torch.full((N, K), 1.5, dtype=torch.float64), 1.0).sample()
            shape, rate = model.theta_conditional(z_theta, eta)
            x, prior_rate = theta, model.b_theta
        else:
            eta = td.Gamma(torch.full((M, K), 1.5, dtype=torch.float64), 1.0).sample()
            shape, rate = model.eta_conditional(z_eta, theta)
            x, prior_rate = eta, model.b_eta
        lp = pyro_log_joint(model.augmented_model, X, theta=theta, eta=eta, z=z)
        diffs.append(lp - td.Gamma(shape, rate).log_prob(x).sum())
        bad.append(lp - td.Gamma(shape, rate - prior_rate).log_prob(x).sum())  # dropped prior rate
    assert_constant(diffs, f"{block} | rest")
    assert_not_constant(bad, f"{block} conditional without its prior rate")


# --------------------------------------------------------------------------------------------------
# rung 3: ELBO identities


def random_params(model, X, g, optimal_phi=False):
    N, M = X.shape
    K = model.K
    r = lambda *s: 0.5 + 2 * torch.rand(*s, generator=g, dtype=torch.float64)  # noqa: E731
    ts, tr, es, er = r(N, K), r(N, K), r(M, K), r(M, K)
    if optimal_phi:
        pt, pe = torch.digamma(ts) - tr.log(), torch.digamma(es) - er.log()
    else:
        pt, pe = torch.randn(N, K, generator=g, dtype=torch.float64), torch.randn(M, K, generator=g, dtype=torch.float64)
    return PoissonMFParams(ts, tr, es, er, pt, pe)


def mc_elbo(model, X, p, S, g):
    """Independent Monte Carlo ELBO of the augmented model: E_q[log p(theta, eta, z, X) - log q]."""
    lam = torch.softmax(p.phi_theta[X.rows] + p.phi_eta[X.cols], -1)
    qt, qe = td.Gamma(p.theta_shape, p.theta_rate), td.Gamma(p.eta_shape, p.eta_rate)
    vals = []
    for _ in range(S):
        theta, eta = qt.sample(), qe.sample()
        z = sample_multinomial(X.values, lam, g)
        rates = theta[X.rows] * eta[X.cols]
        log_p = (G(model.a_theta, model.b_theta).log_prob(theta).sum()
                 + G(model.a_eta, model.b_eta).log_prob(eta).sum()
                 + td.Poisson(rates).log_prob(z).sum()
                 - ((theta @ eta.T).sum() - rates.sum()))  # zero cells: z = 0
        log_q = qt.log_prob(theta).sum() + qe.log_prob(eta).sum() + mult_log_pmf(z, X.values, lam).sum()
        vals.append(float(log_p - log_q))
    vals = np.array(vals)
    return vals.mean(), vals.std(ddof=1) / np.sqrt(S)


@pytest.mark.parametrize("cfg", CONFIGS[:2])
@pytest.mark.parametrize("optimal_phi", [False, True])
def test_closed_form_elbo_eq6_matches_monte_carlo(cfg, optimal_phi):
    model, X, g = problem(cfg)
    p = random_params(model, X, g, optimal_phi)
    closed = float(model.elbo(X, p))
    mean, se = mc_elbo(model, X, p, 3000, g)
    assert abs(closed - mean) < 4 * se, f"closed {closed:.4f} vs MC {mean:.4f} +- {se:.4f}"
    # negative control: an ELBO without its constant -sum log x! (eq. 6) falls outside the Monte Carlo band
    assert abs(closed + float(X.log_factorial_sum()) - mean) > 4 * se, (float(X.log_factorial_sum()), se)
    # the fast sparse path and the exact log-sum-exp path agree to round-off
    torch.testing.assert_close(model.elbo(X, p, exact=True), model.elbo(X, p), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS[:2])
def test_pyro_collapsed_elbo_is_above_augmented_elbo_jensen(cfg):
    from pyro.infer import Trace_ELBO

    model, X, g = problem(cfg)
    res = fit_cavi(model, X, seed=0, num_iters=30, progress=False)
    p = res.variational
    guide_params = {k: torch.as_tensor(p[k]) for k in ("theta_shape", "theta_rate", "eta_shape", "eta_rate")}
    guide = partial(model.guide, params=guide_params)
    estimates = [-Trace_ELBO(num_particles=200).loss(model.model, guide, X) for _ in range(10)]
    mean, se = np.mean(estimates), np.std(estimates, ddof=1) / np.sqrt(len(estimates))
    augmented = res.objective
    assert mean >= augmented - 4 * se, f"collapsed {mean:.4f} +- {se:.4f} < augmented {augmented:.4f}"


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gradient_vanishes_after_each_block_update(cfg):
    """The CAVI fixed point: after updating a block, d ELBO / d block = 0 (autograd, eqs. 3-5)."""
    model, X, g = problem(cfg)
    state = model.cavi_init(X, g)
    for _ in range(3):
        state, _ = model.cavi_update(X, state)
    p, alloc = state

    def grad_norm(params, names):
        params = PoissonMFParams(*(t.detach().clone().requires_grad_(n in names) for n, t in
                                   zip(PoissonMFParams._fields, params)))
        elbo = model.elbo(X, params, exact=True)
        grads = torch.autograd.grad(elbo, [getattr(params, n) for n in names])
        return max(float(gr.abs().max()) for gr in grads), abs(float(elbo.detach()))

    # each block through the model's own update (cavi_block), the others fixed: theta (eq. 3), eta (eq. 4), z (eq. 5)
    for block, names in (("theta", ("theta_shape", "theta_rate")), ("eta", ("eta_shape", "eta_rate")),
                         ("z", ("phi_theta", "phi_eta"))):
        state = model.cavi_block(X, state, block)
        gmax, scale = grad_norm(state.params, names)
        assert gmax < 1e-9 * scale, block
    # and the sweep (cavi_update) ends at the z block's fixed point, its theta and eta those of the blocks
    swept, _ = model.cavi_update(X, CaviState(p, alloc))
    blocks = CaviState(p, alloc)
    for block in ("theta", "eta", "z"):
        blocks = model.cavi_block(X, blocks, block)
    for name in PoissonMFParams._fields:
        torch.testing.assert_close(getattr(swept.params, name), getattr(blocks.params, name), rtol=1e-12, atol=0)
    ts, tr = model.theta_conditional(alloc.c_theta, p.eta_shape / p.eta_rate)
    # negative control: a theta update missing the prior shape is not a stationary point
    bad = p._replace(theta_shape=ts - model.a_theta + 1e-3, theta_rate=tr)
    gmax, _ = grad_norm(bad, ("theta_shape", "theta_rate"))
    assert gmax > 1e-3


# --------------------------------------------------------------------------------------------------
# rung 4 and 5: monotonicity; sparse vs dense N x M x K


MONO = [(cfg, init, at) for cfg in CONFIGS for init, at in [("default", "after_z"), ("reference", "after_eta")]]


@pytest.mark.parametrize("cfg,init,elbo_at", MONO)
def test_cavi_elbo_never_decreases(cfg, init, elbo_at):
    model, X, g = problem(cfg)
    res = fit_cavi(model, X, seed=3, num_iters=150, init=init, elbo_at=elbo_at, progress=False)
    elbo = res.trace["objective"]
    steps = np.diff(elbo)
    assert np.all(steps >= -1e-9 * np.abs(elbo[1:])), f"largest decrease {steps.min()}"
    assert elbo[-1] > elbo[0]
    assert res.attrs["monotone_violations"] == 0


def dense_cavi(model, X, p0, num_iters, elbo_after_z, reference):
    """A deliberately naive N x M x K CAVI (the course's dense algorithm), independent of the library."""
    Xd = X.to_dense()
    ts, tr, es, er = p0.theta_shape, p0.theta_rate, p0.eta_shape, p0.eta_rate
    at, bt, ae, be = model.a_theta, model.b_theta, model.a_eta, model.b_eta
    K = model.K

    def elbo(lam, ts, tr, es, er):
        Elt, Ele = torch.digamma(ts) - tr.log(), torch.digamma(es) - er.log()
        Ez = Xd[..., None] * lam
        z_term = (Ez * (Elt[:, None, :] + Ele[None, :, :] - torch.log(lam))).sum()
        rate = ((ts / tr)[:, None, :] * (es / er)[None, :, :]).sum()
        kl = (td.kl_divergence(td.Gamma(ts, tr), td.Gamma(torch.tensor(at, dtype=ts.dtype), bt)).sum()
              + td.kl_divergence(td.Gamma(es, er), td.Gamma(torch.tensor(ae, dtype=ts.dtype), be)).sum())
        return z_term - rate - torch.lgamma(Xd + 1).sum() - kl

    def lam_of(ts, tr, es, er):
        return torch.softmax((torch.digamma(ts) - tr.log())[:, None, :] + (torch.digamma(es) - er.log())[None], -1)

    lam = torch.full(Xd.shape + (K,), 1.0 / K, dtype=Xd.dtype) if reference else lam_of(ts, tr, es, er)
    trace = [elbo(lam, ts, tr, es, er)]
    for _ in range(num_iters):
        lam = lam_of(ts, tr, es, er)                           # z first, as the course
        Ez = Xd[..., None] * lam
        ts, tr = at + Ez.sum(1), (bt + (es / er).sum(0)).expand_as(ts)
        es, er = ae + Ez.sum(0), (be + (ts / tr).sum(0)).expand_as(es)
        if elbo_after_z:
            lam = lam_of(ts, tr, es, er)
        trace.append(elbo(lam, ts, tr, es, er))
    return torch.stack(trace), (ts, tr, es, er)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("init,elbo_at", [("reference", "after_eta"), ("default", "after_z")])
def test_sparse_cavi_follows_dense_trajectory(cfg, init, elbo_at):
    model, X, g = problem(cfg)
    state = model.cavi_init(X, g, init=init)
    res = fit_cavi(model, X, seed=0, num_iters=40, init=state, elbo_at=elbo_at, progress=False)
    dense_trace, (ts, tr, es, er) = dense_cavi(model, X, state.params, 40, elbo_after_z=(elbo_at == "after_z"), reference=(init == "reference"))
    # a given state starts the trace at its own ELBO; the reference initial ELBO (uniform lambda) is
    # what cavi_initial_elbo reports for init="reference"
    np.testing.assert_allclose(float(model.cavi_initial_elbo(X, state, init=init)), dense_trace[0].item(), rtol=1e-10)
    np.testing.assert_allclose(res.trace["objective"][1:], dense_trace[1:].numpy(), rtol=1e-10)
    np.testing.assert_allclose(res.variational["theta_shape"], ts.numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.variational["eta_rate"], er.numpy(), rtol=1e-9)


def test_course_synthetic_check_improves_on_the_prior():
    """docs/REFERENCE.md section 1: N=100, M=1000, K=5, a=0.1, b=1, torch.manual_seed(305); fit K=10, 100 iters."""
    truth = PoissonMF.course_synthetic(K=5)
    torch.manual_seed(305)
    theta = td.Gamma(truth.a_theta, truth.b_theta).sample((100, 5)).double()  # as the course: float32 draws
    eta = td.Gamma(truth.a_eta, truth.b_eta).sample((1000, 5)).double()
    X = td.Poisson(theta @ eta.T).sample()
    model = PoissonMF.course_synthetic(K=10)
    res = fit_cavi(model, X.numpy(), seed=305, num_iters=100, init="reference", elbo_at="after_eta", progress=False)
    elbo = res.trace["objective"]
    assert elbo[-1] > elbo[0] and res.attrs["monotone_violations"] == 0
    # posterior-mean rates fit the data far better than the prior-mean rates do
    data = res.data
    fitted = torch.as_tensor(res.point["theta"]) @ torch.as_tensor(res.point["eta"]).T
    prior_rate = torch.full_like(fitted, model.K * 0.1 * 0.1)
    ll_fit = td.Poisson(fitted.clamp_min(1e-300)).log_prob(data.to_dense()).sum()
    ll_prior = td.Poisson(prior_rate).log_prob(data.to_dense()).sum()
    assert ll_fit > ll_prior
    # and predict a fresh replicate X' ~ Po(theta eta^T) better than the prior-mean rates do
    X_new = td.Poisson(theta @ eta.T).sample()
    assert (td.Poisson(fitted.clamp_min(1e-300)).log_prob(X_new).sum()
            > td.Poisson(prior_rate).log_prob(X_new).sum())
