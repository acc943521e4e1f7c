"""Every method's result converts to ArviZ and the usual ArviZ functions run on it: summary, plot_trace,
plot_posterior, loo and waic (the pointwise log likelihood is stored), for every model. Also a save/load round
trip keeps the log likelihood."""

import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch

from inference import fit_cavi, fit_gibbs, fit_nuts, fit_svi
from inference.results import InferenceResult
from models import BayesGMM, registry
from models.data import CountMatrix, MixtureData
from models.gaussian_mf import GaussianMF
from models.protocol import PointwiseLogLik

matplotlib.use("Agg")

# every registered model, at its registry calibration size and settings (built-ins at collection time)
NAMES = registry.names()
RUNS = {"cavi": lambda m, d: fit_cavi(m, d, seed=0, num_iters=20, num_samples=60, progress=False),
        "gibbs": lambda m, d: fit_gibbs(m, d, seed=0, num_samples=40, warmup=20, num_chains=2, progress=False),
        "svi": lambda m, d: fit_svi(m, d, seed=0, num_iters=30, num_samples=60, progress=False),
        "nuts": lambda m, d: fit_nuts(m, d, seed=0, num_samples=25, warmup=25, num_chains=2, progress=False)}


def observations(data) -> int:
    """What the pointwise log likelihood covers: every cell of a count matrix (zeros are observed), every row of a
    mixture, every rating."""
    if isinstance(data, CountMatrix):
        return data.shape[0] * data.shape[1]
    return data.shape[0] if isinstance(data, MixtureData) else len(data)


# each model with the methods of RUNS that its compare runs (the grid MRF has discrete sites only: no NUTS)
CASES = [(name, method) for name in NAMES for method in RUNS if method in registry.get(name).compare_methods]


@pytest.mark.slow
@pytest.mark.parametrize("name,method", CASES)
def test_arviz_functions_run_on_every_method(name, method, tmp_path):
    spec = registry.get(name)
    model = spec.calibration_model()
    data = model.simulate(spec.calibration.size, torch.Generator().manual_seed(4))[1]
    res = RUNS[method](model, data)
    idata = res.to_arviz()
    if not isinstance(model, PointwiseLogLik):  # (an MRF has no likelihood of separate observations)
        assert "log_likelihood" not in idata.groups()
        az.summary(idata, var_names=["onehot" if "onehot" in res.posterior else "log_joint"])
        return
    assert "log_likelihood" in idata.groups()
    (ll_name,) = list(idata.log_likelihood.data_vars)
    n_obs = observations(data)
    assert idata.log_likelihood[ll_name].shape[-1] == n_obs
    invariant = next(k for k in res.posterior if k not in model.sites and k != "log_joint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = az.summary(idata, var_names=[invariant])
        assert len(summary) >= 1 and {"mean", "sd", "r_hat"} <= set(summary.columns)
        az.plot_trace(idata, var_names=[invariant], coords={k: v[:2] for k, v in idata.posterior[invariant].coords.items()
                                                           if k not in ("chain", "draw")})
        az.plot_posterior(idata, var_names=[invariant], coords={k: v[:2] for k, v in idata.posterior[invariant].coords.items()
                                                               if k not in ("chain", "draw")})
        loo, waic = az.loo(idata), az.waic(idata)
    matplotlib.pyplot.close("all")
    assert np.isfinite(loo.elpd_loo) and np.isfinite(waic.elpd_waic)
    assert loo.n_data_points == n_obs
    # the pointwise log likelihood survives a save/load round trip (variational results write it when asked)
    back = InferenceResult.load(res.save(tmp_path / f"{method}.nc", site_draws=True))
    np.testing.assert_allclose(back.log_likelihood[ll_name], res.log_likelihood[ll_name])


def test_psis_khat_is_small_when_q_is_the_exact_posterior_and_large_for_mean_field_mf():
    """BayesGMM with K=1 and complete data: CAVI's Normal-Gamma q is the exact posterior, so the importance weights
    p(theta, y) / q(theta) are constant (= p(y)): this checks log_q and log_joint together, constants included."""
    model = BayesGMM(K=1)
    _, data = model.simulate((40, 2), torch.Generator().manual_seed(0))
    res = fit_cavi(model, data, seed=0, num_iters=5, num_samples=300, progress=False)
    draws = {k: torch.as_tensor(np.asarray(v))[0] for k, v in res.posterior.items()}
    log_w = (draws["log_joint"] - model.family.from_dict(res.variational).log_prob(draws)).numpy()
    assert log_w.std() < 1e-8 * abs(log_w.mean())
    assert res.attrs["psis_khat"] < 0.5 and res.attrs["psis_khat_verdict"].startswith("good")
    mf = GaussianMF(K=2, prior="fixed", center=False, noise_prior=(3.0, 1.0))
    _, data = mf.simulate((6, 5, 0.7), torch.Generator().manual_seed(1))
    res = fit_cavi(mf, data, seed=0, num_iters=100, num_samples=400, progress=False)
    assert res.attrs["psis_khat"] > 0.7  # mean-field VI on a factorisation: under-dispersed, heavy-tailed weights
    few = fit_cavi(mf, data, seed=0, num_iters=5, num_samples=1, progress=False)  # one draw: no tail to fit
    assert np.isnan(few.attrs["psis_khat"]) and few.attrs["psis_khat_verdict"].startswith("not computed")
