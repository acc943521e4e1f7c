"""check_model, the derivation checks as a user feature: every built-in model passes every check its capabilities
allow, and plausible derivation bugs (a dropped prior term, a shifted mean, a wrong ELBO constant, a wrong M-step,
a guide that is not the family) each fail the check meant to catch them."""

from dataclasses import dataclass

import pytest
import torch

from inference import check_model
from inference.workflows.checks import CHECKS
from models import BayesGMM, GaussianMF, PoissonMF, registry

BUILT_IN = [s.name for s in registry.specs() if isinstance(s.model_class, str) and s.model_class.startswith("models.")]


def problem(model, size, seed=0):
    return model.simulate(size, torch.Generator().manual_seed(seed))[1]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_model_passes_check_model(name):
    spec = registry.get(name)
    model = spec.calibration_model()
    report = check_model(model, seed=1)
    assert report.passed, str(report)
    ran = {c.name for c in report.checks}
    assert {"conditional", "cavi-sweep", "cavi-block", "elbo-mc", "guide", "em-stationary", "geweke"} <= ran, str(report)


def test_bpmf_passes_what_applies_and_says_why_the_rest_is_skipped():
    model = GaussianMF(K=2, prior="bpmf", center=False, noise_prior=(3.0, 1.0))
    report = check_model(model, problem(model, (5, 4, 0.7)), seed=0, checks=("conditional", "cavi-block", "guide",
                                                                              "em-stationary"), em_iters=300)
    assert report.passed, str(report)
    assert {c.target for c in report.checks if c.name == "conditional"} == {"hyper_U", "U", "hyper_V", "V", "alpha"}
    assert "fixed prior only" in report.skipped["guide"]
    assert "did not converge" in report.skipped["em-stationary"]  # iterated conditional modes crawl on BPMF
    assert "skipped" in str(report)


@dataclass(frozen=True)
class ThetaWithoutPriorRate(PoissonMF):
    """eq. 3 with b_theta dropped from the rate (a dropped prior term)."""

    def theta_conditional(self, z_theta, eta):
        shape, rate = super().theta_conditional(z_theta, eta)
        return shape, rate - self.b_theta


@dataclass(frozen=True)
class ElboWithoutFactorials(PoissonMF):
    """eq. 6 without - sum log x!: a missing constant (every update is still right)."""

    def _elbo_terms(self, data, p, alloc, E):
        return super()._elbo_terms(data, p, alloc, E) + data.log_factorial_sum()


@dataclass(frozen=True)
class MeanCountedTwice(BayesGMM):
    """The Normal-Gamma mean with the prior's weight counted twice."""

    def posterior_params(self, data, w):
        p = super().posterior_params(data, w)
        return p._replace(m=(p.m * p.beta + self.beta0 * self.m0 + 0.3) / p.beta)


@dataclass(frozen=True)
class EtaModeAtMean(PoissonMF):
    """EM's eta update at the conditional mean (a + c) / (b + sum theta) instead of the mode."""

    def em_update(self, data, state):
        theta, eta = super().em_update(data, state)
        return type(state)(theta, eta + 1 / (self.b_eta + theta.sum(0)))


@dataclass(frozen=True)
class GuideWithWrongScale(GaussianMF):
    """A guide whose q(V) scale is not the family's (sqrt 2 too wide)."""

    def guide(self, data, params, subsample_size=None):
        super().guide(data, dict(params, V_tril=1.4142 * params["V_tril"]), subsample_size)


POISSON = dict(K=2, a_theta=2.0, b_theta=2.0, a_eta=2.0, b_eta=1.0)


@pytest.mark.parametrize("wrong, size, failing", [
    (ThetaWithoutPriorRate(**POISSON), (4, 5), {("conditional", "theta"), ("cavi-block", "theta")}),
    (ElboWithoutFactorials(**POISSON), (4, 5), {("elbo-mc", "closed form vs MC")}),
    (MeanCountedTwice(K=2), (12, 1), {("conditional", "components"), ("cavi-block", "params")}),
    (EtaModeAtMean(**POISSON), (4, 5), {("em-stationary", "log joint at EM's mode")}),
    (GuideWithWrongScale(K=2, prior="fixed", center=False, noise_prior=(3.0, 1.0)), (4, 3, 0.7),
     {("guide", "log q: guide vs family")}),
], ids=["dropped prior rate", "missing ELBO constant", "shifted conditional mean", "M-step at the mean",
        "guide outside the family"])
def test_plausible_derivation_bugs_fail_the_check_meant_for_them(wrong, size, failing):
    checks = {name for name, _ in failing}
    report = check_model(wrong, problem(wrong, size, seed=2), seed=0, checks=checks)
    failed = {(c.name, c.target) for c in report.failures}
    assert failing <= failed, str(report)


def test_check_model_arguments():
    with pytest.raises(ValueError, match="unknown check"):
        check_model(PoissonMF(K=2), checks=("telepathy",))
    assert CHECKS[0] == "conditional"
