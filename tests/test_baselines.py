"""The course lab's factorisation baselines (REFERENCE.md section 2): SGD, masked SGD, SVD, ALS."""

import numpy as np
import pytest

from inference.baselines import LAB_MASK, LAB_MATRIX, als, sgd_factorise, truncated_svd


def test_svd_loss_is_the_dropped_singular_value():
    s = np.linalg.svd(LAB_MATRIX, compute_uv=False)
    res = truncated_svd(LAB_MATRIX, 2)
    assert res.loss == pytest.approx(s[2] ** 2, rel=1e-10)
    assert np.linalg.matrix_rank(res.reconstruction) == 2


@pytest.mark.parametrize("seed", range(5))
def test_eckart_young_sgd_loss_is_at_least_the_svd_loss(seed):
    sgd = sgd_factorise(LAB_MATRIX, 2, seed=seed)
    svd = truncated_svd(LAB_MATRIX, 2)
    assert sgd.loss >= svd.loss - 1e-12
    assert sgd.loss == pytest.approx(float(((LAB_MATRIX - sgd.U @ sgd.V.T) ** 2).sum()))
    assert sgd.loss < 1.2 * svd.loss  # and close (measured: 0.12196 vs 0.12191 at seed 0)


def test_sgd_follows_the_course_pseudo_code():
    """One epoch by hand: row-major visits, U_r updated first and used for V_c."""
    import torch

    g = torch.Generator().manual_seed(3)
    U = torch.rand(3, 2, generator=g, dtype=torch.float64).numpy()
    V = torch.rand(3, 2, generator=g, dtype=torch.float64).numpy()
    for r in range(3):
        for c in range(3):
            e = LAB_MATRIX[r, c] - U[r] @ V[c]
            U[r] += 0.01 * e * V[c]
            V[c] += 0.01 * e * U[r]
    res = sgd_factorise(LAB_MATRIX, 2, epochs=1, seed=3)
    np.testing.assert_allclose(res.U, U, rtol=1e-15)
    np.testing.assert_allclose(res.V, V, rtol=1e-15)


def test_masked_sgd_fits_the_observed_entries_and_completes_the_rest():
    res = sgd_factorise(LAB_MATRIX, 2, mask=LAB_MASK)
    assert res.loss < 1e-4
    np.testing.assert_allclose(res.reconstruction[LAB_MASK], LAB_MATRIX[LAB_MASK], atol=2e-3)
    # the hidden entries get finite predictions that the observed ones do not pin down exactly
    assert np.all(np.isfinite(res.reconstruction[~LAB_MASK]))


def test_als_reaches_the_svd_optimum_with_tiny_ridge():
    res = als(LAB_MATRIX, 2, lam=1e-8, iters=300)
    assert res.loss == pytest.approx(truncated_svd(LAB_MATRIX, 2).loss, rel=1e-5)
    assert np.all(np.diff(res.trace) <= 1e-9)  # ALS never increases the (ridge-free part of the) loss here


@pytest.mark.parametrize("call,match", [(lambda: sgd_factorise(np.ones(3), 1), "2-D"),
                                        (lambda: sgd_factorise(LAB_MATRIX, 4), "rank"),
                                        (lambda: als(LAB_MATRIX, 2, lam=0.0), "lam"),
                                        (lambda: sgd_factorise(LAB_MATRIX, 2, mask=np.ones((2, 2))), "mask")])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
