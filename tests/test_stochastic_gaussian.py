"""Closed-form stochastic VI for Gaussian MF with the fixed prior (models/gaussian_mf/stochastic.py): one iteration
equals a per-row NumPy transcription of eqs. 4, S1 and S2 (natural parameters blended, the batch scaled by N / |B|,
the offset of all the ratings); with every row in one batch and step 1 it is CAVI exactly; with minibatches it
reaches CAVI's fixed point; its block-wise ELBO is the model's, which Pyro's Monte Carlo ELBO confirms; ratings
memory-mapped from disk give the same fit."""

import math

import numpy as np
import pytest
import torch

from inference import fit_cavi, fit_stochastic
from inference.stochastic import stochastic_vi
from models import GaussianMF
from models.blocks import RowBlocks

NOISE = (2.0, 1.0)


@pytest.fixture(scope="module", params=[None, NOISE], ids=["fixed-alpha", "noise-prior"])
def problem(request):
    sim = GaussianMF(K=3, prior="fixed", center=False, noise_prior=request.param)
    _, data = sim.simulate((50, 40, 0.3), torch.Generator().manual_seed(3))
    data = data.with_values(data.values + 3.0)  # a mean far from 0, so that the offset matters
    model = GaussianMF(K=3, prior="fixed", alpha=1.5, sigma_U=0.8, sigma_V=1.3, noise_prior=request.param)
    return model, model.prepare(data)


def reference_step(model, data, q, rows, rho):
    """One stochastic-VI iteration written out row by row in NumPy from the module docstring (eqs. 4, S1, S2)."""
    R, C, X = data.rows.numpy(), data.cols.numpy(), data.values.numpy()
    N, M = data.shape
    K = model.K
    off = X.mean()
    Um, Uc = q.U_mean.numpy().copy(), q.U_cov.numpy().copy()
    Vm, Vc = q.V_mean.numpy(), q.V_cov.numpy()
    E_a = model.alpha if q.a_alpha is None else float(q.a_alpha / q.b_alpha)
    for i in rows:                                                                           # eq. 4
        P = np.eye(K) / model.sigma_U ** 2
        b = np.zeros(K)
        for e in np.flatnonzero(R == i):
            j = C[e]
            P += E_a * (np.outer(Vm[j], Vm[j]) + Vc[j])
            b += E_a * (X[e] - off) * Vm[j]
        Uc[i] = np.linalg.inv(P)
        Um[i] = Uc[i] @ b
    scale = N / len(rows)
    in_batch = np.isin(R, rows)
    Vm_new, Vc_new = np.empty_like(Vm), np.empty_like(Vc)
    for j in range(M):                                                                       # eq. S1
        P_hat = np.eye(K) / model.sigma_V ** 2
        h_hat = np.zeros(K)
        for e in np.flatnonzero((C == j) & in_batch):
            i = R[e]
            P_hat += E_a * scale * (np.outer(Um[i], Um[i]) + Uc[i])
            h_hat += E_a * scale * (X[e] - off) * Um[i]
        P_old = np.linalg.inv(Vc[j])
        P = (1 - rho) * P_old + rho * P_hat
        h = (1 - rho) * P_old @ Vm[j] + rho * h_hat
        Vc_new[j] = np.linalg.inv(P)
        Vm_new[j] = Vc_new[j] @ h
    out = {"U_mean": Um, "U_cov": Uc, "V_mean": Vm_new, "V_cov": Vc_new}
    if q.a_alpha is not None:                                                                # eq. S2
        sse = 0.0
        for e in np.flatnonzero(in_batch):
            i, j = R[e], C[e]
            u, v, Phi, Psi = Um[i], Vm_new[j], Uc[i], Vc_new[j]
            sse += (X[e] - off - u @ v) ** 2 + u @ Psi @ u + v @ Phi @ v + np.trace(Phi @ Psi)
        a0, b0 = model.noise_prior
        out["a_alpha"] = (1 - rho) * float(q.a_alpha) + rho * (a0 + scale * in_batch.sum() / 2)
        out["b_alpha"] = (1 - rho) * float(q.b_alpha) + rho * (b0 + scale * sse / 2)
    return out


def test_one_iteration_equals_the_equations_row_by_row(problem):
    """A half batch with rho = 0.3 from a q that is not the start (so that every term is exercised)."""
    model, data = problem
    blocks = RowBlocks.from_matrix(data)
    q = stochastic_vi(model, blocks, seed=1, batch_size=17, num_iters=3, progress=False, eval_every=0).q
    constants = model.stochastic_constants(blocks)
    assert constants.offset == pytest.approx(float(data.values.mean()), rel=1e-14) and constants.n == len(data)
    rows = np.sort(np.random.default_rng(0).choice(data.shape[0], 25, replace=False))
    state = model.stochastic_step(blocks, model.stochastic_start(q, constants), rows, 0.3)
    expected = reference_step(model, data, q, rows, 0.3)
    for k, v in expected.items():
        np.testing.assert_allclose(getattr(state.q, k).numpy(), v, rtol=1e-9, atol=1e-12, err_msg=k)
    # the caller's q is left alone
    assert not torch.equal(q.U_mean[rows], state.q.U_mean[rows])


def test_full_batch_with_step_one_is_cavi(problem):
    model, data = problem
    cavi = fit_cavi(model, data, seed=0, num_iters=10, progress=False)
    run = stochastic_vi(model, RowBlocks.from_matrix(data), seed=0, batch_size=data.shape[0], num_iters=10,
                        kappa=0.0, eval_every=1, progress=False)
    np.testing.assert_allclose(run.elbo, cavi.trace["objective"], rtol=1e-12)
    for k, v in cavi.variational.items():
        np.testing.assert_allclose(getattr(run.q, k).numpy(), v, rtol=1e-9, atol=1e-13, err_msg=k)


def test_minibatches_reach_the_cavi_fixed_point(problem):
    """Batches of a fifth of the rows, rho_t = (1 + t)^-0.6: after 1,500 iterations the ELBO is within 1e-4 (relative)
    of CAVI's converged one and the predictions u.v within 1% (measured 7.3e-6 and 0.17% with alpha fixed, 4.2e-5
    and 0.25% with the noise prior)."""
    model, data = problem
    cavi = fit_cavi(model, data, seed=0, num_iters=500, progress=False)
    res = fit_stochastic(model, data, seed=0, batch_size=10, num_iters=1500, kappa=0.6, progress=False)
    assert res.method == "stochastic" and res.model == model
    assert abs(res.objective - cavi.objective) / abs(cavi.objective) < 1e-4
    pc = cavi.variational["U_mean"] @ cavi.variational["V_mean"].T
    ps = res.variational["U_mean"] @ res.variational["V_mean"].T
    assert np.sqrt(np.mean((pc - ps) ** 2) / np.mean(pc ** 2)) < 0.01


def test_a_stochastic_result_is_saved_and_read_back(problem, tmp_path):
    """(The trace's evaluated iterations once collided with the trace's dimension name, so no stochastic result could
    be written.)"""
    from inference.results import InferenceResult

    model, data = problem
    res = fit_stochastic(model, data, seed=0, batch_size=10, num_iters=12, progress=False)
    back = InferenceResult.load(res.save(tmp_path / "stochastic.nc"))
    assert back.method == "stochastic"
    for k in ("objective", "at_iteration"):
        np.testing.assert_array_equal(back.trace[k], res.trace[k])
    np.testing.assert_array_equal(back.trace["at_iteration"], [0, 5, 10, 12])
    np.testing.assert_array_equal(back.variational["V_cov"], res.variational["V_cov"])


def test_block_elbo_is_the_models_elbo_and_pyros_monte_carlo_elbo(problem):
    from inference.workflows.checks import pyro_log_joint, to_pyro

    model, data = problem
    blocks = RowBlocks.from_matrix(data)
    run = stochastic_vi(model, blocks, seed=2, batch_size=20, num_iters=30, progress=False)
    q = run.q
    closed = float(model.elbo(data, q))
    assert run.elbo[-1] == pytest.approx(closed, rel=1e-12)
    constants = model.stochastic_constants(blocks)
    for rows_per_block in (7, 1000):
        assert model.stochastic_elbo(blocks, model.stochastic_start(q, constants), constants, rows_per_block) == \
            pytest.approx(closed, rel=1e-12)
    draws = q.sample(400, torch.Generator().manual_seed(5))
    log_q = q.log_prob(draws)
    with torch.no_grad():
        values = [float(pyro_log_joint(model.model, data, to_pyro(model, data, {k: d[s] for k, d in draws.items()})))
                  - float(log_q[s]) for s in range(400)]
    mean, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(mean - closed) < 4 * se, (mean, se, closed)


def test_ratings_memory_mapped_from_disk_give_the_same_fit(problem, tmp_path):
    model, data = problem
    mem = RowBlocks.from_matrix(data)
    RowBlocks.save(tmp_path / "csr", mem.indptr, mem.cols, mem.values, mem.shape)
    disk = RowBlocks.open(tmp_path / "csr")
    kw = dict(seed=4, batch_size=13, num_iters=20, progress=False)
    a, b = stochastic_vi(model, mem, **kw), stochastic_vi(model, disk, **kw)
    assert a.elbo == b.elbo
    batch = disk.ratings(np.array([0, 7, 49]))
    assert batch.shape == (3, data.shape[1]) and batch.nnz == int(np.isin(data.rows.numpy(), [0, 7, 49]).sum())


def test_bpmf_is_refused_by_name():
    model = GaussianMF(K=2, prior="bpmf")
    _, data = GaussianMF(K=2, prior="fixed", center=False).simulate((10, 8, 0.5), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="prior='fixed'"):
        fit_stochastic(model, data, seed=0, num_iters=2, progress=False)
