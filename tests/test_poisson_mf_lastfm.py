"""Poisson MF on the real LastFM data: monotone CAVI, the rescaled ELBO, recommendations and genres."""

import numpy as np
import pytest
import torch

from inference import fit_cavi
from models import PoissonMF
from models.poisson_mf import expected_rates, factor_top_items, recommend
from tests.conftest import needs_lastfm

pytestmark = [needs_lastfm, pytest.mark.slow]


@pytest.fixture(scope="module")
def lastfm_cavi(lastfm):
    return fit_cavi(PoissonMF.course_lastfm(K=40), lastfm, seed=0, num_iters=200, num_samples=5, progress=False)


def test_cavi_elbo_never_decreases_on_lastfm(lastfm_cavi):
    elbo = lastfm_cavi.trace["objective"]
    assert np.all(np.diff(elbo) >= -1e-9 * np.abs(elbo[1:]))
    assert lastfm_cavi.attrs["monotone_violations"] == 0


def test_rescaled_elbo_is_near_the_course_figure(lastfm_cavi, lastfm):
    # the course: "a rescaled ELBO of around -2" after 200 iterations at K=40
    assert lastfm_cavi.attrs["rescaled_elbo"] == pytest.approx(lastfm_cavi.objective / lastfm.total)
    assert -2.1 < lastfm_cavi.attrs["rescaled_elbo"] < -1.9
    # inferlab's own figure, pinned: the band above is reached after 20 sweeps already, so it cannot tell a slow or
    # wrong update from a right one; -1.9467499282 is the value of `inferlab fit poisson-mf --data lastfm --method
    # cavi -K 40 --iters 200 --seed 0` (and -1.9506595139 with the course's start and ELBO placement)
    assert lastfm_cavi.attrs["rescaled_elbo"] == pytest.approx(-1.9467499282299554, rel=1e-9)


def test_reference_variant_rescaled_elbo(lastfm):
    res = fit_cavi(PoissonMF.course_lastfm(K=40), lastfm, seed=0, num_iters=200, num_samples=1, init="reference",
                   elbo_at="after_eta", progress=False)
    assert res.attrs["rescaled_elbo"] == pytest.approx(-1.9506595138836378, rel=1e-9)


def test_float32_follows_float64(lastfm):
    model = PoissonMF.course_lastfm(K=10)
    a = fit_cavi(model, lastfm, seed=0, num_iters=30, num_samples=1, progress=False)
    b = fit_cavi(model, lastfm, seed=0, num_iters=30, num_samples=1, progress=False, dtype=torch.float32)
    assert b.attrs["dtype"] == "float32"
    np.testing.assert_allclose(b.trace["objective"], a.trace["objective"], rtol=1e-4)


def test_recommendations_for_user_349(lastfm_cavi, lastfm):
    rec = recommend(lastfm_cavi, 349, n=10)
    assert len(rec) == 10 and not rec["seen"].any()
    assert np.all(np.diff(rec["expected_rate"].to_numpy()) <= 0)
    i = int(np.flatnonzero(lastfm.row_labels == 349)[0])
    heard = set(lastfm.col_labels[lastfm.cols[lastfm.rows == i].numpy()])
    assert not heard & set(rec["item"])
    # the ranking is the user's row of E[Theta] E[H]^T: check one entry independently
    theta, eta = lastfm_cavi.point["theta"], lastfm_cavi.point["eta"]
    m = int(np.flatnonzero(lastfm.col_labels == rec["item"].iloc[0])[0])
    assert rec["expected_rate"].iloc[0] == pytest.approx(float(theta[i] @ eta[m]))
    with_seen = recommend(lastfm_cavi, 349, n=5, exclude_seen=False)
    assert with_seen["expected_rate"].iloc[0] >= rec["expected_rate"].iloc[0]
    with pytest.raises(ValueError, match="not a row label"):
        recommend(lastfm_cavi, 123456)


def test_genres_are_ordered_by_loading(lastfm_cavi):
    g = factor_top_items(lastfm_cavi, n=10, num_factors=3)
    assert len(g) == 30 and g["name"].map(type).eq(str).all()
    loadings = g.groupby("factor", sort=False)["loading"].first().to_numpy()
    assert np.all(np.diff(loadings) <= 0)
    assert np.isclose(loadings[0], lastfm_cavi.point["theta"].sum(0).max())


def test_expected_rates_exact_for_cavi(lastfm_cavi):
    rows, cols = torch.tensor([0, 5]), torch.tensor([3, 7])
    theta, eta = lastfm_cavi.point["theta"], lastfm_cavi.point["eta"]
    np.testing.assert_allclose(expected_rates(lastfm_cavi, rows, cols).numpy(),
                               [theta[0] @ eta[3], theta[5] @ eta[7]])
