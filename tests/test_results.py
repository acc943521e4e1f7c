"""InferenceResult: ArviZ conversion, NetCDF round trip, atomic writes."""

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
    for group in ("posterior", "point", "trace", "sample_stats"):
        for k, v in getattr(res, group).items():
            np.testing.assert_array_equal(getattr(back, group)[k], v)
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
    monkeypatch.setattr(InferenceResult, "to_arviz", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        res.save(tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        InferenceResult.load(tmp_path / "missing.nc")
    (tmp_path / "junk.nc").write_text("junk")
    with pytest.raises(ValueError, match="not an inferlab result"):
        InferenceResult.load(tmp_path / "junk.nc")
