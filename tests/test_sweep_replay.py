"""Fast exact tests of the Gibbs samplers: each model's sweep is replayed from its documented complete conditionals
(the ones check_model verifies against the Pyro model) and the shared samplers, with the same generator, and must give
the same draws to round-off. A sweep that reads a stale variable, forgets to pass a sampled hyperparameter on, or draws
a block with the wrong scale fails here in a second, where before only the slow statistical tests (Geweke, SBC,
Gibbs against NUTS) could catch it. The samplers themselves are checked against their distributions' moments."""

import math

import numpy as np
import pytest
import torch

from inference import fit_gibbs
from models.conjugate import (dirichlet_expected_log, sample_dirichlet, sample_gamma, sample_gaussian_precision,
                              sample_gig, sample_multinomial, sample_wishart)


def gens(seed: int = 7) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


def assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(torch.as_tensor(x), torch.as_tensor(y), rtol=1e-12, atol=1e-12)


def warm(model, data, sweeps=3):
    g = torch.Generator().manual_seed(1)
    state = model.gibbs_init(data, g)
    for _ in range(sweeps):
        state = model.gibbs_sweep(data, state, g)
    return state


@pytest.mark.parametrize("scale_move", [False, True])
def test_poisson_mf_sweep_is_z_then_theta_then_eta_with_fresh_values(scale_move):
    from models.poisson_mf.model import PoissonMF

    model = PoissonMF(K=3, scale_move=scale_move)
    _, X = model.sample(6, 5, torch.Generator().manual_seed(2))
    theta, eta = warm(model, X)
    g1, g2 = gens()
    swept = model.gibbs_sweep(X, type(warm(model, X))(theta, eta), g1)
    z = sample_multinomial(X.values, model.z_conditional(X, theta, eta), g2)                   # eq. 2
    z_theta = torch.zeros_like(theta).index_add_(0, X.rows, z)
    z_eta = torch.zeros_like(eta).index_add_(0, X.cols, z)
    theta_new = sample_gamma(*model.theta_conditional(z_theta, eta), g2)                    # eq. 3, current eta
    eta_new = sample_gamma(*model.eta_conditional(z_eta, theta_new), g2)                    # eq. 4, the new theta
    if scale_move:
        c = sample_gig(*model.scale_conditional(theta_new, eta_new), g2)                    # eq. 7, the new both
        theta_new, eta_new = theta_new * c, eta_new / c
    assert_same(swept, (theta_new, eta_new))


def test_poisson_mf_scale_conditional_eq7_is_the_density_along_the_orbit():
    """theta_.k -> c_k theta_.k, eta_.k -> eta_.k / c_k: log p(c theta, eta / c, X) + (N - M - 1) sum_k log c_k (the
    Jacobian and the Haar measure dc / c) minus log GIG(c; eq. 7) is the same for every c."""
    from models.conjugate import gig_log_pdf
    from models.poisson_mf.model import PoissonMF

    model = PoissonMF(K=3, a_theta=0.7, b_theta=1.3, a_eta=1.9, b_eta=0.4)
    _, X = model.sample(6, 4, torch.Generator().manual_seed(8))
    theta, eta = warm(model, X)
    N, M = theta.shape[0], eta.shape[0]
    p, a, b = model.scale_conditional(theta, eta)
    g = torch.Generator().manual_seed(9)
    good, bad = [], []
    for _ in range(6):
        c = torch.exp(torch.randn(3, generator=g, dtype=torch.float64))
        lj = model.log_joint(X, theta * c, eta / c)
        gig = gig_log_pdf(c, p, a, b).sum()
        good.append(lj + (N - M - 1) * torch.log(c).sum() - gig)
        bad.append(lj + (N - M) * torch.log(c).sum() - gig)  # negative control: the Haar measure forgotten
    good, bad = torch.stack(good), torch.stack(bad)
    assert float(good.max() - good.min()) < 1e-9 * float(good.abs().max())
    assert float(bad.max() - bad.min()) > 1e-2


def test_gig_draws_have_the_gig_mean():
    from scipy.special import kv

    p, a, b = 1.7, torch.full((20000,), 2.5, dtype=torch.float64), torch.full((20000,), 0.8, dtype=torch.float64)
    x = sample_gig(p, a, b, torch.Generator().manual_seed(4))
    w = math.sqrt(2.5 * 0.8)
    mean = math.sqrt(0.8 / 2.5) * kv(p + 1, w) / kv(p, w)  # E[X] = sqrt(b / a) K_{p+1}(w) / K_p(w)
    assert abs(float(x.mean()) - mean) < 4 * float(x.std()) / math.sqrt(20000)
    y = sample_gig(-3.2, a[:5], b[:5], torch.Generator().manual_seed(4))
    assert torch.all(y > 0) and torch.equal(y, sample_gig(-3.2, a[:5], b[:5], torch.Generator().manual_seed(4)))


def test_bpmf_sweep_passes_every_sampled_value_on():
    from models.gaussian_mf import GaussianMF

    model = GaussianMF(K=2, prior="bpmf", noise_prior=(2.0, 1.0), center=False)
    _, R = model.simulate((6, 5, 0.7), torch.Generator().manual_seed(3))
    s = warm(model, R)
    g1, g2 = gens()
    swept = model.gibbs_sweep(R, s, g1)

    def hyper(F):  # eq. 2: Lambda ~ W(W*, nu*), mu | Lambda ~ N(m*, (beta* Lambda)^-1)
        m, beta, W, nu = model.hyper_conditional(F)
        Lam = sample_wishart(W[None], torch.tensor([nu], dtype=F.dtype), g2)[0]
        return sample_gaussian_precision(beta * Lam, g2, mean=m), Lam

    def rows(F_other, mu, Lam, side):  # eq. 1 with the sampled alpha
        P, b = model.row_conditional(R, F_other, mu, Lam, side, s.alpha)
        return sample_gaussian_precision(P, g2, linear=b)

    mu_U, Lam_U = hyper(s.U)
    U = rows(s.V, mu_U, Lam_U, "U")
    mu_V, Lam_V = hyper(s.V)
    V = rows(U, mu_V, Lam_V, "V")                                                             # the new U
    alpha = sample_gamma(*model.noise_conditional(R, U, V), g2)                               # eq. 3
    assert_same(swept, (U, V, mu_U, Lam_U, mu_V, Lam_V, alpha))


@pytest.mark.parametrize("full", [False, True], ids=["spherical", "full"])
def test_mixture_sweep_is_z_then_pi_then_components(full):
    from models import BayesGMM, BayesGMMFull

    model = BayesGMMFull(K=2, beta0=0.3) if full else BayesGMM(K=2, beta0=0.3)
    _, data = model.sample(12, 2, torch.Generator().manual_seed(4))
    state = warm(model, data)
    g1, g2 = gens()
    swept = model.gibbs_sweep(data, state, g1)
    z = torch.multinomial(model._z_probs(data, state), 1, generator=g2)[:, 0]
    p = model.posterior_params(data, torch.nn.functional.one_hot(z, 2).to(data.dtype))
    pi = sample_dirichlet(p.alpha, g2)
    if full:   # Lambda_j ~ W(W_j, nu_j), mu_j | Lambda_j ~ N(m_j, (beta_j Lambda_j)^-1)
        Lam = sample_wishart(p.W, p.nu, g2)
        mu = sample_gaussian_precision(p.beta[:, None, None] * Lam, g2, mean=p.m)
        expected = (pi, mu, Lam)
    else:      # tau_j ~ Ga(a_j, b_j), mu_j | tau_j ~ N(m_j, 1 / (beta_j tau_j))
        tau = sample_gamma(p.a, p.b, g2)
        mu = p.m + torch.randn(p.m.shape, generator=g2, dtype=p.m.dtype) / torch.sqrt(p.beta * tau[:, None])
        expected = (pi, mu, tau)
    assert_same(swept, expected)


def test_fit_gibbs_keeps_exactly_the_sweeps_after_warmup_at_the_thinning():
    from models.poisson_mf.model import PoissonMF

    model = PoissonMF(K=2)
    _, X = model.sample(5, 4, torch.Generator().manual_seed(5))
    seen = {}
    res = fit_gibbs(model, X, seed=3, num_samples=4, warmup=3, thin=2, num_chains=1, batched=False, progress=False,
                    callback=lambda it, s, obj: seen.__setitem__(it, s.theta.clone()))
    kept = np.asarray(res.posterior["theta"])[0]
    assert kept.shape[0] == 4 and sorted(seen) == list(range(1, 3 + 4 * 2 + 1))
    np.testing.assert_array_equal(kept, np.stack([seen[it].numpy() for it in (5, 7, 9, 11)]))
    two = fit_gibbs(model, X, seed=3, num_samples=3, warmup=1, num_chains=2, progress=False)
    assert not np.array_equal(two.posterior["theta"][0], two.posterior["theta"][1])  # chains get their own seeds


@pytest.mark.parametrize("batched", [False, True])
def test_thinned_gibbs_evaluates_the_log_joint_at_the_kept_sweeps(batched):
    """thin > 1: the trace holds the log joint at every thin-th warmup sweep and at every kept sweep (the last one
    included), where it is the log joint of the kept draws; the callback still sees every sweep."""
    from models.poisson_mf.model import PoissonMF

    model = PoissonMF(K=2)
    _, X = model.sample(5, 4, torch.Generator().manual_seed(5))
    seen = []
    res = fit_gibbs(model, X, seed=3, num_samples=4, warmup=5, thin=3, num_chains=2, batched=batched, progress=False,
                    callback=lambda it, s, obj: seen.append((it, obj is not None)))
    at = np.asarray(res.trace["at_sweep"])
    np.testing.assert_array_equal(at, [[0, 3, 8, 11, 14, 17]] * 2)   # warmup 5, kept sweeps 8, 11, 14, 17
    obj = np.asarray(res.trace["objective"])
    assert obj.shape == (2, 6)
    np.testing.assert_allclose(obj[:, -4:], np.asarray(res.sample_stats["log_joint"]), rtol=1e-12)
    per_chain = 1 if batched else 2
    assert [it for it, _ in seen] == list(range(1, 18)) * per_chain
    assert [it for it, evaluated in seen if evaluated] == [3, 8, 11, 14, 17] * per_chain


# ---------------------------------------------------------------------------------------------------
# the shared samplers against their distributions (20,000 draws: a few milliseconds)


def test_gaussian_from_its_precision_has_covariance_P_inverse():
    torch.manual_seed(0)
    A = torch.randn(3, 3, dtype=torch.float64)
    P = A @ A.T + 3 * torch.eye(3, dtype=torch.float64)
    P[0, 1] = P[1, 0] = 2.0  # strongly correlated: L^-1 eps and L^-T eps differ
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = sample_gaussian_precision(P.expand(20000, 3, 3), torch.Generator().manual_seed(1), mean=mean)
    cov = torch.cov(x.T)
    target = torch.linalg.inv(P)
    assert float((cov - target).abs().max()) < 0.03 * float(target.abs().max())
    assert float((x.mean(0) - mean).abs().max()) < 4 * math.sqrt(float(target.diagonal().max()) / 20000)
    y = sample_gaussian_precision(P, torch.Generator().manual_seed(2), linear=P @ mean)  # mean P^-1 b
    torch.testing.assert_close(sample_gaussian_precision(P, torch.Generator().manual_seed(2), mean=mean), y)


def test_wishart_draws_have_mean_nu_W_and_the_bartlett_variance():
    W = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    nu = 4.5
    L = sample_wishart(W.expand(20000, 2, 2), torch.full((20000,), nu, dtype=torch.float64),
                       torch.Generator().manual_seed(3))
    torch.testing.assert_close(L.mean(0), nu * W, rtol=0.03, atol=0.0)
    var = nu * (W ** 2 + torch.outer(W.diagonal(), W.diagonal()))  # Var(Lambda_ij) = nu (W_ij^2 + W_ii W_jj)
    torch.testing.assert_close(L.var(0), var, rtol=0.08, atol=0.0)


def test_dirichlet_expected_log_hand_worked():
    # E[log pi_1] = digamma(alpha_1) - digamma(alpha_0): for (1, 1) it is psi(1) - psi(2) = -1; for (2, 3), the
    # first entry is psi(2) - psi(5) = 1 - (1 + 1/2 + 1/3 + 1/4) = -13/12
    out = dirichlet_expected_log(torch.tensor([[1.0, 1.0], [2.0, 3.0]], dtype=torch.float64))
    torch.testing.assert_close(out[0], torch.tensor([-1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(out[1, 0], torch.tensor(-13 / 12, dtype=torch.float64))


def test_run_loop_skips_unevaluated_iterations_and_returns_the_last_evaluated_state_on_divergence():
    """An iteration whose objective is None is completed but not traced; a non-finite objective stops the loop with
    the state of the last finite evaluated iteration (not an unevaluated one after it)."""
    from inference.driver import run_loop

    def step(s):
        s = s + 1
        return s, (None if s % 2 else (float("nan") if s == 6 else -float(s)))

    state, out = run_loop(step, 0, num_iters=10, initial_objective=0.0, progress=False)
    assert out.diverged and state == 4 and out.num_iters == 5
    assert out.iterations == [0, 2, 4] and out.objective == [0.0, -2.0, -4.0] and len(out.seconds) == 3
    state, out = run_loop(lambda s: (s + 1, None if s % 3 else 1.0), 0, num_iters=7, initial_objective=0.0,
                          progress=False)
    assert state == 7 and out.num_iters == 7 and out.iterations == [0, 1, 4, 7] and not out.diverged
