"""InferenceResult: ArviZ conversion, NetCDF round trip, atomic writes."""

import json

import numpy as np
import pytest
import torch

from inference import InferenceResult, fit_cavi, fit_gibbs
from inference.results import _arviz
from models import PoissonMF


@pytest.fixture(scope="module")
def runs():
    model = PoissonMF(K=2)
    _, X = model.sample(6, 5, torch.Generator().manual_seed(0))
    return (fit_cavi(model, X, seed=0, num_iters=20, num_samples=30, progress=False),
            fit_gibbs(model, X, seed=0, num_samples=30, warmup=10, num_chains=2, progress=False))


def test_posterior_shapes(runs):
    cavi, gibbs = runs
    assert cavi.posterior["theta"].shape == (1, 30, 6, 2)
    assert gibbs.posterior["theta"].shape == (2, 30, 6, 2)
    assert gibbs.posterior["rate"].shape == (2, 30, 30)
    assert cavi.trace["objective"].dtype == np.float64 and cavi.trace["objective"].shape == (21,)
    assert gibbs.trace["objective"].shape == (2, 41)


@pytest.mark.parametrize("which", [0, 1])
def test_save_load_round_trip(runs, tmp_path, which):
    res = runs[which]
    path = res.save(tmp_path / "r.nc")
    back = InferenceResult.load(path)
    assert back.method == res.method and back.model == res.model
    sampler = res.variational is None
    for group in ("posterior", "point", "trace", "sample_stats"):
        for k, v in getattr(res, group).items():
            if group == "posterior" and k in res.model.sites and not sampler:
                assert k not in back.posterior   # q's draws of the sites are left out by default (q reproduces them)
                continue
            np.testing.assert_array_equal(getattr(back, group)[k], v)
    if not sampler:
        for k, v in res.variational.items():
            np.testing.assert_array_equal(back.variational[k], v)
        full = InferenceResult.load(res.save(tmp_path / "full.nc", site_draws=True))
        for k in res.model.sites:
            np.testing.assert_array_equal(full.posterior[k], res.posterior[k])
        (tmp_path / "full.nc").unlink()
    assert back.attrs["seed"] == 0 and back.attrs["dtype"] == "float64"
    np.testing.assert_array_equal(back.coords["row"], res.coords["row"])
    assert [p.name for p in tmp_path.iterdir()] == ["r.nc"]  # no temporary file left


def test_arviz_functions_run(runs):
    az = _arviz()
    idata = runs[1].to_arviz()
    summ = az.summary(idata, var_names=["rate"])
    assert len(summ) == 30 and "r_hat" in summ.columns
    assert {"point", "trace"} <= set(idata.groups())


def test_failed_write_leaves_nothing(runs, tmp_path, monkeypatch):
    res = runs[0]
    # fails inside the write, after the temporary file is open and a group written
    monkeypatch.setattr(InferenceResult, "_coords", lambda self, v: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        res.save(tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        InferenceResult.load(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_text("junk")
    with pytest.raises(ValueError, match="not an inferlab result"):
        InferenceResult.load(tmp_path / "junk.nc")


@pytest.mark.parametrize("case", ["normal", "student-t", "skewed", "light", "few-tail"])
def test_psis_khat_equals_arviz_psislw(case):
    """The NumPy PSIS k-hat (no ArviZ import on CAVI's path) against ArviZ's psislw on weights of every regime."""
    import arviz as az

    from inference.results import psis_khat

    rng = np.random.default_rng(3)
    lw = {"normal": rng.standard_normal(400), "student-t": np.log(np.abs(rng.standard_t(1.5, 1000))),
          "skewed": 3 * rng.gamma(0.5, size=2000) - 40.0, "light": -rng.exponential(size=100) ** 2,
          "few-tail": np.r_[np.zeros(40), rng.standard_normal(5)]}[case]
    _, k_az = az.psislw(lw - lw.max())
    expected = float(np.asarray(k_az).reshape(-1)[0])
    assert psis_khat(lw) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert np.isnan(psis_khat(lw[:19])) and psis_khat(np.r_[lw, np.inf]) == np.inf


def test_saved_file_is_the_arviz_inference_data(runs, tmp_path):
    """save writes NetCDF directly (h5netcdf, no ArviZ): az.from_netcdf must read the same groups, variables, dims,
    coordinates (string labels too) and the booleans back as booleans; load gets the labels back as str."""
    az = _arviz()
    res = runs[1]
    res = InferenceResult(res.method, res.model, res.posterior, res.point, res.variational, res.trace,
                          {**res.sample_stats, "diverging": np.zeros(res.sample_stats["log_joint"].shape, bool)},
                          res.attrs, res.dims, {**res.coords, "row": np.array([f"user {i}" for i in
                                                                              range(len(res.coords["row"]))])})
    disk = az.from_netcdf(res.save(tmp_path / "r.nc"), engine="h5netcdf")
    mem = res.to_arviz()
    assert set(disk.groups()) == set(mem.groups()) >= {"posterior", "sample_stats", "point", "trace"}
    for g in mem.groups():
        assert set(disk[g].data_vars) == set(mem[g].data_vars)
        for k, v in mem[g].data_vars.items():
            assert disk[g][k].dims == v.dims
            np.testing.assert_array_equal(disk[g][k].values, v.values)
    assert disk.sample_stats["diverging"].dtype == bool
    assert list(disk.posterior["row"].values[:2]) == ["user 0", "user 1"]
    assert json.loads(disk.posterior.attrs["inferlab"]) == {**json.loads(mem.posterior.attrs["inferlab"]),
                                                            "site_draws": True}
    back = InferenceResult.load(tmp_path / "r.nc")
    assert back.coords["row"][1] == "user 1" and back.sample_stats["diverging"].dtype == bool


def _ar1_chains(rng, C, S, Q, phi, shift=0.0):
    """C chains of S draws of Q AR(1) series (autocorrelation phi), chain c shifted by c * shift."""
    x = np.empty((C, S, Q))
    x[:, 0] = rng.standard_normal((C, Q))
    for t in range(1, S):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi ** 2) * rng.standard_normal((C, Q))
    return x + shift * np.arange(C)[:, None, None]


@pytest.mark.parametrize("C,S,phi,shift", [(4, 500, 0.0, 0.0), (4, 501, 0.9, 0.0), (2, 80, 0.99, 0.5),
                                           (1, 301, 0.5, 0.0), (3, 9, -0.6, 0.0), (4, 6, 0.3, 2.0)])
def test_rhat_ess_mcse_equal_arviz(C, S, phi, shift):
    """The vectorised NumPy R-hat (rank), bulk and tail ESS and MCSE of the mean against ArviZ's per element, on
    independent, autocorrelated (phi 0.99: Geyer's sequence truncated early), anticorrelated, shifted (R-hat >> 1),
    odd-length, single-chain and very short chains, with a constant element, an integer-valued element (ties in the
    ranks) and a NaN element."""
    import warnings

    import arviz as az

    from inference.results import ess, mcse_mean, rhat

    rng = np.random.default_rng(C * 1000 + S)
    x = _ar1_chains(rng, C, S, 6, phi, shift)
    x[:, :, 3] = 1.5                                    # constant
    x[:, :, 4] = np.round(2 * x[:, :, 4])               # ties
    x[0, 1, 5] = np.nan                                 # a NaN draw
    x = x.reshape(C, S, 2, 3)                           # a 2-d event
    ds = az.convert_to_dataset({"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {"rhat": az.rhat(ds)["x"].values, "bulk": az.ess(ds, method="bulk")["x"].values,
                    "tail": az.ess(ds, method="tail")["x"].values, "mcse": az.mcse(ds, method="mean")["x"].values}
    got = {"rhat": rhat(x), "bulk": ess(x), "tail": ess(x, "tail"), "mcse": mcse_mean(x)}
    for k in expected:
        assert got[k].shape == (2, 3), k
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=k)
    assert np.isnan(got["rhat"][1, 2]) and np.isnan(got["bulk"][1, 2])
    with pytest.raises(ValueError, match="kind must be"):
        ess(x, "median")


def test_average_ranks_equal_scipys_with_ties():
    from scipy.stats import rankdata

    from inference.results import _average_ranks

    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 4, (5, 30)).astype(float), rng.standard_normal((1, 30)),
                        np.full((1, 30), 2.0)])
    np.testing.assert_array_equal(_average_ranks(a), rankdata(a, method="average", axis=1))
