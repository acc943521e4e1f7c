"""The course lab's factorisation baselines (docs/REFERENCE.md section 2): SGD, masked SGD, SVD, ALS."""

import numpy as np
import pytest

from inference.baselines import LAB_MASK, LAB_MATRIX, als, ridge_objective, sgd_factorise, sgd_random, truncated_svd


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


def test_random_entry_sgd_steps_follow_the_regularised_update_by_hand():
    """Two steps on a matrix with one observed entry (so the random pick is known): lam / |Omega_n| shrinkage, both
    factors updated from the old values."""
    import torch

    A = np.array([[2.0, 0.0], [0.0, 0.0]])
    mask = np.array([[True, False], [False, False]])
    g = torch.Generator().manual_seed(5)
    U = torch.rand(2, 1, generator=g, dtype=torch.float64).numpy()
    V = torch.rand(2, 1, generator=g, dtype=torch.float64).numpy()
    lr, lam = 0.1, 0.3
    for _ in range(2):  # |Omega| = 1 step per epoch
        e = 2.0 - U[0] @ V[0]
        U[0], V[0] = U[0] + lr * (e * V[0] - lam * U[0]), V[0] + lr * (e * U[0] - lam * V[0])
    res = sgd_random(A, 1, epochs=2, lr=lr, lam=lam, seed=5, mask=mask)
    np.testing.assert_allclose(res.U, U, rtol=1e-15)
    np.testing.assert_allclose(res.V, V, rtol=1e-15)
    assert res.trace[-1] == pytest.approx((2.0 - U[0] @ V[0]) ** 2 + lam * ((U ** 2).sum() + (V ** 2).sum()))


def test_random_entry_sgd_and_als_minimise_the_same_regularised_objective():
    """With lam / |Omega_n| per visit, SGD's fixed point is ALS's: both reach the same ridge objective."""
    lam = 0.5
    a = als(LAB_MATRIX, 2, lam=lam, iters=2000, seed=1)
    s = sgd_random(LAB_MATRIX, 2, epochs=4000, lr=0.01, lam=lam, seed=1)
    j_als, j_sgd = ridge_objective(LAB_MATRIX, a.U, a.V, lam), ridge_objective(LAB_MATRIX, s.U, s.V, lam)
    assert j_sgd == pytest.approx(j_als, rel=2e-3)
    # and the regulariser matters: without it the loss would fall to the SVD's (Eckart-Young)
    assert s.loss > truncated_svd(LAB_MATRIX, 2).loss + 0.05


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


# ---------------------------------------------------------------------------------------------------
# Recommender baselines on rating lists (inference/rating_baselines.py)


from gmf_helpers import ratings  # noqa: E402
from inference.baselines import als_sparse, funk_svd, tune_als  # noqa: E402


def test_funk_svd_one_epoch_follows_the_update_rules_literally():
    data = ratings(N=6, M=5, seed=1)
    K, lr, reg = 3, 0.05, 0.1
    got = funk_svd(data, K, epochs=1, lr=lr, reg=reg, init_sd=0.3, seed=4)
    rng = np.random.default_rng(4)  # the same initial draws, then the per-rating rules written out
    P, Q = 0.3 * rng.standard_normal((6, K)), 0.3 * rng.standard_normal((5, K))
    b, c = np.zeros(6), np.zeros(5)
    r_all = data.values.numpy()
    mu = r_all.mean()
    for i, j, r in zip(data.rows.numpy(), data.cols.numpy(), r_all):
        e = r - mu - b[i] - c[j] - sum(P[i, k] * Q[j, k] for k in range(K))
        b[i], c[j] = b[i] + lr * (e - reg * b[i]), c[j] + lr * (e - reg * c[j])
        for k in range(K):
            P[i, k], Q[j, k] = P[i, k] + lr * (e * Q[j, k] - reg * P[i, k]), Q[j, k] + lr * (e * P[i, k] - reg * Q[j, k])
    for a, e in ((got.P, P), (got.Q, Q), (got.b, b), (got.c, c)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("weighted,biases", [(True, True), (False, False), (True, False)])
def test_als_sparse_item_step_is_the_per_column_ridge_solution(weighted, biases):
    """The last half-sweep solves every (v_j, c_j) given the final (U, b): checked column by column with numpy."""
    data = ratings(N=8, M=7, seed=2)
    lam, K = 0.3, 2
    fit = als_sparse(data, K, lam=lam, weighted=weighted, biases=biases, iters=2, seed=0)
    rows, cols, r = data.rows.numpy(), data.cols.numpy(), data.values.numpy() - fit.mu
    for j in range(7):
        its = rows[cols == j]
        W = np.hstack([fit.P[its], np.ones((len(its), 1))]) if biases else fit.P[its]
        y = r[cols == j] - (fit.b[its] if biases else 0.0)
        lam_j = lam * max(len(its), 1) if weighted else lam
        sol = np.linalg.solve(W.T @ W + lam_j * np.eye(W.shape[1]), W.T @ y)
        np.testing.assert_allclose(fit.Q[j], sol[:K], rtol=1e-9, atol=1e-12)
        if biases:
            assert fit.c[j] == pytest.approx(sol[K], rel=1e-9, abs=1e-12)


def test_als_sparse_training_error_falls_and_tuning_uses_validation_only():
    data = ratings(N=30, M=20, seed=5)
    fit = als_sparse(data, 3, lam=0.05, iters=15)
    assert fit.trace[-1] <= fit.trace[0] and fit.trace[-1] < 0.9 * float(data.values.std())
    best, scores = tune_als(data, 3, lams=(0.01, 0.1, 1.0))
    assert set(scores) == {0.01, 0.1, 1.0} and scores[best] == min(scores.values())


@pytest.mark.parametrize("call,match", [(lambda d: als_sparse(d, 0), "K must be"), (lambda d: als_sparse(d, 2, lam=0), "lam"),
                                        (lambda d: funk_svd(d, 2, lr=-1), "lr"),
                                        (lambda d: tune_als(d, 2, validation_fraction=1.5), "validation_fraction")])
def test_rating_baselines_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call(ratings())
