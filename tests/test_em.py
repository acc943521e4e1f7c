"""EM for the posterior mode, every model: the log joint never decreases; EM's fixed point is a stationary point of
the log joint (autograd in unconstrained coordinates: log for positive sites, logits for pi, the symmetric part for
precision matrices), so a wrong sign, constant or index in an M-step is caught (negative controls below); restarts
keep the best start; settings with no posterior mode are refused."""

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from inference import fit_em
from inference.workflows.compare import compare
from models import BayesGMM, PoissonMF
from models.mixture.full import BayesGMMFull
from models.gaussian_mf import GaussianMF, GibbsState, solve_rows

CASES = {
    "poisson-mf": (PoissonMF(K=2, a_theta=1.5, b_theta=1.0, a_eta=2.0, b_eta=0.5), (6, 8), 3000),
    "bayes-gmm": (BayesGMM(K=2, alpha0=2.0, beta0=0.5, a0=3.0, b0=1.0), (40, 2), 900),
    "bayes-gmm-full": (BayesGMMFull(K=2, alpha0=2.0), (40, 2), 300),
    "gaussian-mf": (GaussianMF(K=2, prior="fixed", center=False, noise_prior=(3.0, 1.0)), (8, 7, 0.6), 1500),
}
POSITIVE = ("theta", "eta", "tau", "alpha")


def problem(name, seed=0):
    model, size, iters = CASES[name]
    return model, model.simulate(size, torch.Generator().manual_seed(seed))[1], iters


def state_of(result):
    return {k: torch.as_tensor(np.asarray(v)) for k, v in result.point.items()}


def log_joint_gradient(model, data, state: dict) -> dict[str, float]:
    """max |d log p / d x| per site, x unconstrained: log of positive sites, logits of pi (softmax), the entries of
    A with Lambda = (A + A^T) / 2 for precision matrices, the site itself otherwise."""
    leaves = {k: (torch.log(v) if k in POSITIVE or k == "pi" else v).detach().clone().requires_grad_()
              for k, v in state.items()}

    def site(k, x):
        if k in POSITIVE:
            return torch.exp(x)
        if k == "pi":
            return torch.softmax(x, -1)
        return 0.5 * (x + x.transpose(-1, -2)) if k.startswith("Lambda") else x
    lj = model.log_joint(data, **{k: site(k, x) for k, x in leaves.items()})
    grads = torch.autograd.grad(lj, list(leaves.values()), allow_unused=True)
    return {k: 0.0 if g is None else float(g.abs().max()) for k, g in zip(leaves, grads)}


@pytest.mark.parametrize("name", list(CASES))
def test_em_fixed_point_is_a_stationary_point_of_the_log_joint(name):
    model, data, iters = problem(name)
    res = fit_em(model, data, seed=0, num_iters=iters, tol=None, progress=False)
    obj = np.asarray(res.trace["objective"])
    assert res.attrs["monotone_violations"] == 0 and np.all(np.diff(obj) >= -1e-9 * np.abs(obj[1:]))
    assert obj[-1] > obj[0] + 1.0
    grad = log_joint_gradient(model, data, state_of(res))
    assert max(grad.values()) < 1e-7, grad
    # ... and not at the start (the test can fail)
    start = model.em_init(data, torch.Generator().manual_seed(0))
    assert max(log_joint_gradient(model, data, start._asdict()).values()) > 1e-2


@dataclass(frozen=True)
class WrongTauMode(BayesGMM):
    """The Normal-Gamma mode without the d/2 that the prior of mu contributes (a typical slip)."""

    def component_mode(self, p, d):
        return p.m, (p.a - 1) / p.b


@dataclass(frozen=True)
class WrongThetaMode(PoissonMF):
    """theta at the conditional mean (a + c) / (b + sum eta) instead of the mode (a - 1 + c) / (...)."""

    def em_update(self, data, state):
        theta, eta = super().em_update(data, state)
        return type(state)(theta + 1 / (self.b_theta + eta.sum(0)), eta)


@pytest.mark.parametrize("wrong, name", [(WrongTauMode(K=2, alpha0=2.0, beta0=0.5, a0=3.0, b0=1.0), "bayes-gmm"),
                                         (WrongThetaMode(K=2, a_theta=1.5, b_theta=1.0, a_eta=2.0, b_eta=0.5),
                                          "poisson-mf")])
def test_a_wrong_m_step_is_not_stationary(wrong, name):
    _, data, iters = problem(name)
    res = fit_em(wrong, data, seed=0, num_iters=iters, tol=None, progress=False)
    assert max(log_joint_gradient(wrong, data, state_of(res)).values()) > 1e-2


def test_bpmf_blocks_are_conditional_modes():
    """BPMF has no closed-form joint mode (iterated conditional modes crawl along the hierarchical ridge), so each
    block is checked where it is exact: the Normal-Wishart hyperparameters at their mode given U, and V and alpha
    (updated last in a sweep) at their conditional modes; the log joint never decreases over sweeps."""
    model = GaussianMF(K=2, prior="bpmf", center=False, noise_prior=(3.0, 1.0))
    _, data = model.simulate((8, 7, 0.6), torch.Generator().manual_seed(2))
    res = fit_em(model, data, seed=0, num_iters=200, tol=None, progress=False)
    assert res.attrs["monotone_violations"] == 0
    s = model.em_update(data, GibbsState(**state_of(res)))
    grad = log_joint_gradient(model, data, s._asdict())
    assert grad["alpha"] < 1e-8 and grad["mu_V"] > 1e-6  # alpha is updated last; mu_V was set from the V before
    for side in ("U", "V"):
        other = s.V if side == "U" else s.U
        F = solve_rows(*model.row_conditional(data, other, getattr(s, f"mu_{side}"), getattr(s, f"Lambda_{side}"),
                                               side, s.alpha))
        assert log_joint_gradient(model, data, s._replace(**{side: F})._asdict())[side] < 1e-8
    mu_U, Lam_U = model.hyper_mode(s.U)
    grad = log_joint_gradient(model, data, s._replace(mu_U=mu_U, Lambda_U=Lam_U)._asdict())
    assert grad["mu_U"] < 1e-8 and grad["Lambda_U"] < 1e-8


def test_restarts_keep_the_best_and_are_reproducible():
    model, data, _ = problem("bayes-gmm-full")
    a = fit_em(model, data, seed=3, num_iters=200, num_restarts=4, progress=False)
    b = fit_em(model, data, seed=3, num_iters=200, num_restarts=4, progress=False)
    assert a.objective == max(a.attrs["restart_objectives"]) and len(a.attrs["restart_objectives"]) == 4
    np.testing.assert_array_equal(np.asarray(a.posterior["mu"]), np.asarray(b.posterior["mu"]))
    assert a.posterior["mu"].shape[:2] == (1, 1) and a.attrs["point_estimate"] is True


@pytest.mark.parametrize("model, size, match", [
    (PoissonMF(K=2, a_theta=0.5), (5, 6), "a_theta"),
    (BayesGMM(K=2, alpha0=0.5), (20, 2), "alpha0"),
    (BayesGMM(K=2, a0=0.2), (20, 1), "a0"),
    (BayesGMMFull(K=2, nu0=2.0), (20, 2), "nu0"),
])
def test_settings_without_a_posterior_mode_are_refused(model, size, match):
    _, data = model.simulate(size, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        fit_em(model, data, seed=0, progress=False)


def test_bad_arguments_are_refused():
    model, data, _ = problem("bayes-gmm")
    with pytest.raises(ValueError, match="num_restarts"):
        fit_em(model, data, seed=0, num_restarts=0)
    with pytest.raises(ValueError, match="num_restarts must be 1"):
        fit_em(model, data, seed=0, num_restarts=2, init=model.em_init(data, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="no EM"):
        fit_em(object(), data, seed=0)


def test_compare_reports_em_as_a_point_estimate(tmp_path):
    """Two well-separated clusters: the posterior is concentrated, so the mode is close to the posterior mean."""
    model = BayesGMM(K=2, alpha0=2.0)
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.randn(30, 2, generator=g, dtype=torch.float64) - 3,
                      torch.randn(30, 2, generator=g, dtype=torch.float64) + 3])
    comp = compare(model, data, methods=["gibbs", "em"], seed=0, progress=False, out=tmp_path,
                   settings={"gibbs": {"num_samples": 100, "warmup": 50, "num_chains": 2}})
    row = comp.table.set_index("method").loc["em"]
    assert row["objective"] == "log_joint" and np.isfinite(row["heldout_lpd_per_row"])
    assert np.isnan(row.get("max_abs_z_vs_gibbs", np.nan)) and np.isnan(row["min_ess"])  # no spread, no chain
    assert 0 <= row["mu_sorted_rel_rms_vs_gibbs"] < 0.05
    assert (tmp_path / "em.nc").is_file() and "em" in (tmp_path / "report.md").read_text()


def test_em_result_converts_to_arviz_with_its_log_likelihood(tmp_path):
    import arviz as az

    from inference.results import InferenceResult

    model, data, _ = problem("gaussian-mf")
    res = fit_em(model, data, seed=0, num_iters=50, progress=False)
    idata = res.to_arviz()
    assert idata.posterior["pred"].shape[:2] == (1, 1) and idata.log_likelihood["r"].shape == (1, 1, len(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the sd of one draw is undefined
        assert len(az.summary(idata, var_names=["pred"], kind="stats")) == idata.posterior["pred"].shape[-1]
    back = InferenceResult.load(res.save(tmp_path / "em.nc"))
    assert back.attrs["point_estimate"] and back.objective == pytest.approx(res.objective)
