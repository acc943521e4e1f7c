"""Proof of extension: a fifth model defined in one file outside the package (examples/hierarchical_poisson.py),
registered by importing it, gets every method, compare, SBC, check_model and the command line with no other file
touched; a deliberately wrong variant of it fails check_model."""

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from inference import check_model, fit_cavi, fit_em, fit_gibbs, fit_nuts, fit_svi
from inference.results import InferenceResult, mcse_mean
from inference.workflows.calibration import sbc
from inference.workflows.compare import compare
from inference.workflows.sweep import get_executor
from models import registry
from tests.conftest import ROOT

PLUGIN = ROOT / "examples" / "hierarchical_poisson.py"


@pytest.fixture(scope="module")
def example():
    registry.load_plugin(str(PLUGIN))
    spec = registry.get("hierarchical-poisson")
    return spec, spec.make(), spec.dataset("pumps").load()


def test_registered_by_importing_its_file(example):
    spec, model, data = example
    assert "hierarchical-poisson" in registry.names() and spec.cls is type(model)
    assert type(model).__module__ == "hierarchical_poisson"  # imported from examples/, not from the package
    assert len(data) == 10 and float(data.y.sum()) == 75


@pytest.mark.slow
def test_every_method_fits_it_and_they_agree(example, tmp_path):
    _, model, data = example
    gibbs = fit_gibbs(model, data, seed=0, num_samples=3000, warmup=300, num_chains=2, progress=False)
    nuts = fit_nuts(model, data, seed=1, num_samples=600, warmup=300, num_chains=2, progress=False)
    g, n = gibbs.posterior["expected"], nuts.posterior["expected"]
    z = (g.mean((0, 1)) - n.mean((0, 1))) / np.sqrt(mcse_mean(g) ** 2 + mcse_mean(n) ** 2)
    assert np.abs(z).max() < 4.5, z
    cavi = fit_cavi(model, data, seed=0, num_iters=200, tol=1e-12, progress=False)
    svi = fit_svi(model, data, seed=0, num_iters=1500, lr=0.02, progress=False)
    assert cavi.attrs["monotone_violations"] == 0 and cavi.attrs["converged"]
    assert svi.attrs["elbo"] <= cavi.objective + 1e-6 and svi.attrs["elbo"] > cavi.objective - 1.0
    em = fit_em(model, data, seed=0, progress=False)
    assert em.attrs["converged"] and em.attrs["monotone_violations"] == 0
    # the exact posterior means by quadrature over beta (independent of the model's code): lambda integrates out,
    # p(beta | y) ∝ Ga(beta; gamma, delta) prod_i beta^alpha / (beta + t_i)^(alpha + y_i), and
    # E[lambda_i | y] = E[(alpha + y_i) / (beta + t_i) | y]
    exact = exact_rate_means(model, data)
    lam = gibbs.posterior["lam"]
    z = (lam.mean((0, 1)) - exact) / mcse_mean(lam)
    assert np.abs(z).max() < 4.5, z
    back = InferenceResult.load(gibbs.save(tmp_path / "gibbs.nc"))  # saved results rebuild the registered model
    assert back.model == model


def exact_rate_means(model, data) -> np.ndarray:
    from scipy.special import logsumexp

    y, t = data.y.numpy(), data.t.numpy()
    beta = np.exp(np.linspace(-8, 6, 200001))  # a log grid: d beta = beta d(log beta)
    log_post = ((model.gamma - 1) * np.log(beta) - model.delta * beta + np.log(beta)
                + (len(y) * model.alpha) * np.log(beta)
                - ((model.alpha + y)[None, :] * np.log(beta[:, None] + t[None, :])).sum(1))
    w = np.exp(log_post - logsumexp(log_post))
    return (w[:, None] * (model.alpha + y)[None, :] / (beta[:, None] + t[None, :])).sum(0)


def test_compare_and_sbc_run_on_it(example):
    spec, model, data = example
    comp = compare(model, data, methods=["cavi", "gibbs", "em"], seed=0, progress=False,
                   settings={"gibbs": {"num_samples": 400, "warmup": 100, "num_chains": 2}})
    table = comp.table.set_index("method")
    assert comp.reference == "gibbs" and np.isfinite(table.loc["cavi", "heldout_lpd_per_unit"])
    assert table.loc["cavi", "expected_corr_vs_gibbs"] > 0.99
    res = sbc(spec.calibration_model(), "gibbs", num_replications=60, size=spec.calibration.size, num_draws=19,
              bins=5, warmup=50, thin=2, seed=3, executor=get_executor("serial"), progress=False)
    assert res.min_pvalue_bonferroni > 1e-3, res.pvalues


def test_it_passes_check_model_and_a_wrong_variant_fails(example):
    spec, _, data = example
    # the calibration hyperparameters: under the default vague prior (gamma = 0.1) Geweke's successive-conditional
    # chain barely moves (ESS about 2 in 2,000 sweeps) and the test cannot conclude
    model = spec.calibration_model()
    report = check_model(model, data, seed=0)
    assert report.passed and len(report.checks) >= 10, str(report)
    module = sys.modules[type(model).__module__]

    @dataclass(frozen=True)
    class ForgotDelta(module.HierarchicalPoisson):
        """eq. 3 with the prior's delta dropped from the rate of beta's conditional."""

        def beta_conditional(self, lam):
            shape, rate = super().beta_conditional(lam)
            return shape, rate - self.delta

    wrong = check_model(ForgotDelta(**spec.calibration.model_options), data, seed=0)
    failed = {(c.name, c.target) for c in wrong.failures}
    assert {("conditional", "beta"), ("cavi-block", "beta"), ("em-stationary", "log joint at EM's mode")} <= failed, \
        str(wrong)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inference", "--plugin", str(PLUGIN), *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_the_command_line_serves_it(tmp_path):
    proc = run_cli("fit", "hierarchical-poisson", "--data", "pumps", "--method", "cavi", "--iters", "50",
                   "--no-progress", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "cavi on hierarchical-poisson" in proc.stdout and (tmp_path / "cavi.nc").is_file()
    proc = run_cli("check", "hierarchical-poisson", "--checks", "conditional,cavi-block,em-stationary")
    assert proc.returncode == 0 and "all checks passed" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("models")
    assert "hierarchical-poisson" in proc.stdout and "CAVI" in proc.stdout
    proc = run_cli("fit", "hierarchical-poisson", "--method", "cavi", "-K", "3")
    assert proc.returncode == 2 and "hierarchical-poisson has no K" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "inference", "--plugin", "no/such/file.py", "models"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr
