"""The model protocol: every method checks the capabilities it needs before it starts and names every missing hook
in one error; the registry is the one model table; the built-in models declare what they implement."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from inference import fit_cavi, fit_em, fit_gibbs, fit_nuts, fit_svi
from inference.workflows.calibration import geweke, sbc, vsbc
from inference.workflows.compare import compare
from models import BayesGMM, PoissonMF, registry
from models.protocol import CAVI, EM, Gibbs, MissingCapability, capabilities, missing_hooks, require


@dataclass(frozen=True)
class Incomplete:
    """A model that has Gibbs but forgot its invariants and its log joint, and has no CAVI, EM, SVI or Pyro model."""

    K: int = 2
    name = "incomplete"
    sites = ("x",)
    dims = {"x": ()}

    def hyperparameters(self):
        return {"K": self.K}

    def prepare(self, data, *, dtype=torch.float64, device="cpu"):
        return torch.as_tensor(data, dtype=dtype)

    def gibbs_init(self, data, generator):
        return None

    def gibbs_sweep(self, data, state, generator):
        return state


@pytest.mark.parametrize("fit, missing", [
    (fit_gibbs, ["LogJoint (missing log_joint)", "Invariants (missing invariant_dims, invariants, coords)"]),
    (fit_cavi, ["CAVI (missing family, cavi_blocks, cavi_options, cavi_init", "Invariants (missing"]),
    (fit_em, ["EM (missing em_init, em_update)", "LogJoint (missing log_joint)"]),
    (fit_svi, ["SVI (missing family, guide_constraints, svi_elbo, guide, guide_init, elbo, objective_attrs)",
               "PyroModel (missing max_plate_nesting, model)"]),
    (fit_nuts, ["PyroModel (missing max_plate_nesting, model)"]),
])
def test_every_method_names_every_missing_hook_before_it_starts(fit, missing):
    with pytest.raises(MissingCapability) as err:
        fit(Incomplete(), np.zeros(3), seed=0, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{fit.__name__}: model 'incomplete' has no ")
    for part in missing:
        assert part in msg, msg


def test_workflows_check_capabilities_too():
    with pytest.raises(MissingCapability, match="compare: model 'incomplete' has no .*HeldOut"):
        compare(Incomplete(), np.zeros(3), methods=["gibbs"], progress=False)
    with pytest.raises(MissingCapability, match=r"sbc \(gibbs\): .*Simulates \(missing simulate, resimulate\)"):
        sbc(Incomplete(), "gibbs", num_replications=2, size=(2,), num_draws=9, bins=5)
    with pytest.raises(MissingCapability, match="geweke: .*Simulates"):
        geweke(Incomplete(), (2,))
    with pytest.raises(MissingCapability, match="vsbc: .*CAVI"):
        vsbc(Incomplete(), num_replications=2, size=(2,))
    # a missing capability is also a ValueError and a TypeError, so the command line reports it in one line
    assert issubclass(MissingCapability, ValueError) and issubclass(MissingCapability, TypeError)


def test_capabilities_of_the_built_in_models():
    everything = {"Model", "LogJoint", "Invariants", "Simulates", "HeldOut", "PointwiseLogLik", "CAVI", "Gibbs", "EM",
                  "PyroModel", "SVI", "Conditionals"}
    discrete = {"ExactInference", "MessagePassing", "PyroSites"}  # the grid MRF (no likelihood of held-out entries)
    for spec in registry.specs():
        if isinstance(spec.model_class, str) and spec.model_class.startswith("models."):  # the built-in models
            caps = set(capabilities(spec.make()))
            expected = everything - {"PointwiseLogLik"} | discrete if spec.name == "grid-mrf" else everything
            assert expected <= caps, (spec.name, expected - caps)
            assert spec.name == "grid-mrf" or not caps & discrete, spec.name
    assert "BatchedGibbs" in capabilities(PoissonMF(K=2)) and "BatchedGibbs" not in capabilities(BayesGMM(K=2))
    assert missing_hooks(PoissonMF(K=2), EM) == [] and missing_hooks(object(), Gibbs) == ["gibbs_init", "gibbs_sweep"]
    require(PoissonMF(K=2), CAVI, EM, method="test")  # no error


def test_method_specific_options_are_checked_against_the_model():
    X = PoissonMF(K=2).sample(5, 4, torch.Generator().manual_seed(0))[1]
    with pytest.raises(ValueError, match="fit_cavi: elbo_at must be one of"):
        fit_cavi(PoissonMF(K=2), X, seed=0, elbo_at="sometimes", progress=False)
    data = BayesGMM(K=2).sample(20, 2, torch.Generator().manual_seed(0))[1]
    with pytest.raises(ValueError, match=r"fit_cavi: bayes-gmm has no CAVI option 'elbo_at' \(its options: none\)"):
        fit_cavi(BayesGMM(K=2), data, seed=0, elbo_at="after_eta", progress=False)
    with pytest.raises(ValueError, match="no CAVI option 'init'"):
        fit_cavi(BayesGMM(K=2), data, seed=0, init="reference", progress=False)
    res = fit_cavi(BayesGMM(K=2), data, seed=0, num_iters=2, init="default", progress=False)  # "default" is everyone's
    assert res.attrs["init"] == "default"


def test_the_registry_is_the_one_model_table():
    assert set(registry.names()) >= {"poisson-mf", "gaussian-mf", "bayes-gmm", "bayes-gmm-full"}
    spec = registry.get("poisson-mf")
    assert spec.cls is PoissonMF and spec.make(K=4, hyper={"a_theta": 0.3}) == PoissonMF(K=4, a_theta=0.3)
    with pytest.raises(registry.UnknownModel, match="unknown model 'nope'; available: poisson-mf"):
        registry.get("nope")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['zeta'\] for poisson-mf"):
        spec.make(K=2, hyper={"zeta": 1.0})
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.ModelSpec("poisson-mf", BayesGMM, "", (), spec.synthetic))
    assert registry.get("gaussian-mf").calibration_model().center is False  # generative: no data-dependent offset
