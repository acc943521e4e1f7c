"""Closed-form stochastic VI for Poisson MF (inference/stochastic.py, models/poisson_mf/stochastic.py): with every row
in one batch and step 1 it is CAVI exactly; with minibatches and Robbins-Monro steps it reaches CAVI's fixed point;
its ELBO is the model's closed-form ELBO, which Pyro's Monte Carlo ELBO of the same model and guide confirms; counts
memory-mapped from disk give the same fit as counts in memory."""

import math

import numpy as np
import pytest
import torch

from inference import fit_cavi, fit_stochastic
from inference.stochastic import step_size, stochastic_vi
from models import PoissonMF
from models.blocks import RowBlocks


@pytest.fixture(scope="module")
def problem():
    model = PoissonMF(K=3)
    _, X = model.sample(60, 40, torch.Generator().manual_seed(1))
    return model, model.prepare(X)


def test_full_batch_with_step_one_is_cavi(problem):
    """Every row in the batch, rho = 1, one local iteration: each iteration is a CAVI sweep (same q, same ELBO)."""
    model, data = problem
    cavi = fit_cavi(model, data, seed=0, num_iters=12, progress=False)
    run = stochastic_vi(model, RowBlocks.from_matrix(data), seed=0, batch_size=data.shape[0], num_iters=12,
                        kappa=0.0, eval_every=1, progress=False)
    np.testing.assert_allclose(run.elbo, cavi.trace["objective"], rtol=1e-12)
    for k in ("theta_shape", "theta_rate", "eta_shape", "eta_rate"):
        np.testing.assert_allclose(getattr(run.q, k).numpy(), cavi.variational[k], rtol=1e-10)
    # a half batch with the same steps is a different algorithm (the negative control of the comparison above)
    half = stochastic_vi(model, RowBlocks.from_matrix(data), seed=0, batch_size=data.shape[0] // 2, num_iters=2,
                         kappa=0.0, eval_every=1, progress=False)
    assert not np.allclose(half.elbo[1:], cavi.trace["objective"][1:3], rtol=1e-6)


def test_minibatches_reach_the_cavi_fixed_point(problem):
    """Batches of a quarter of the rows, rho_t = (1 + t)^-0.5, ten local iterations: after 1,500 iterations the ELBO
    is within 1e-3 (relative) of CAVI's converged one and the rates within 1% (measured 4e-4..9e-4 and 0.2-0.7% at
    1,000 iterations, 1.4e-4..1.8e-4 at 3,000)."""
    model, data = problem
    cavi = fit_cavi(model, data, seed=0, num_iters=500, progress=False)
    res = fit_stochastic(model, data, seed=0, batch_size=15, num_iters=1500, local_iters=10, kappa=0.5,
                         progress=False)
    assert res.method == "stochastic" and res.attrs["batch_size"] == 15
    assert abs(res.objective - cavi.objective) / abs(cavi.objective) < 1e-3
    rate_c = cavi.point["theta"] @ cavi.point["eta"].T
    rate_s = res.point["theta"] @ res.point["eta"].T
    assert np.sqrt(np.mean((rate_c - rate_s) ** 2) / np.mean(rate_c ** 2)) < 0.01
    # the trace: ELBO once per epoch (4 iterations) and at the end, iterations recorded
    assert list(res.trace["at_iteration"][:3]) == [0, 4, 8] and res.trace["at_iteration"][-1] == 1500


def test_stochastic_elbo_is_the_models_elbo_and_pyros_monte_carlo_elbo(problem):
    """The ELBO computed block by block equals the model's closed-form ELBO at the same q, and Pyro's Monte Carlo
    estimate E_q[log p(x, z, theta, eta) - log q] of the augmented model and the guide agrees within 4 standard
    errors (the family and the objective are Pyro's)."""
    from inference.workflows.checks import pyro_log_joint, to_pyro

    model, data = problem
    blocks = RowBlocks.from_matrix(data)
    run = stochastic_vi(model, blocks, seed=2, batch_size=20, num_iters=30, progress=False)
    q = run.q
    closed = float(model.elbo(data, q))
    assert run.elbo[-1] == pytest.approx(closed, rel=1e-12)
    for rows_per_block in (7, 1000):  # any block size
        assert model.stochastic_elbo(blocks, q, float(data.log_factorial_sum()), rows_per_block) == \
            pytest.approx(closed, rel=1e-12)
    g = torch.Generator().manual_seed(5)
    local = model.local_q(data, q)
    draws = q.sample(400, g)
    log_q = q.log_prob(draws)
    values = []
    with torch.no_grad():
        for s in range(400):
            v = {k: d[s] for k, d in draws.items()}
            z = local.sample(g)
            values.append(float(pyro_log_joint(model.augmented_model, data, to_pyro(model, data, {**v, **z})))
                          - float(log_q[s]) - float(local.log_prob(z)))
    mean, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(len(values))
    assert abs(mean - closed) < 4 * se, (mean, se, closed)


def test_counts_memory_mapped_from_disk_give_the_same_fit(problem, tmp_path):
    model, data = problem
    mem = RowBlocks.from_matrix(data)
    RowBlocks.save(tmp_path / "csr", mem.indptr, mem.cols, mem.values, mem.shape)
    disk = RowBlocks.open(tmp_path / "csr")
    assert isinstance(disk.values, np.memmap) and disk.nnz == data.nnz
    kw = dict(seed=4, batch_size=13, num_iters=20, progress=False)
    a, b = stochastic_vi(model, mem, **kw), stochastic_vi(model, disk, **kw)
    assert a.elbo == b.elbo
    rows = np.array([0, 5, 59])
    for x, y in zip(mem.block(rows), disk.block(rows)):
        assert torch.equal(x, y)
    local, cols, values = mem.block(rows)
    dense = data.to_dense()
    for j, n in enumerate(rows):
        assert torch.equal(dense[n, cols[local == j]], values[local == j])
        assert int((local == j).sum()) == int((dense[n] > 0).sum())


def test_step_sizes_and_bad_arguments(problem):
    model, data = problem
    assert step_size(1, 1.0, 0.0) == 1.0 and step_size(3, 1.0, 0.5) == pytest.approx(0.5)
    blocks = RowBlocks.from_matrix(data)
    for kw, match in ((dict(kappa=1.5), "kappa must lie in"), (dict(tau=-1.0), "tau must be >= 0"),
                      (dict(batch_size=0), "batch_size must be an integer >= 1"),
                      (dict(local_iters=0), "local_iters must be an integer >= 1")):
        args = dict(seed=0, batch_size=10, num_iters=2, progress=False)
        args.update(kw)
        with pytest.raises(ValueError, match=match):
            stochastic_vi(model, blocks, **args)
    with pytest.raises(ValueError, match="indptr must have"):
        RowBlocks(blocks.indptr[:-1], blocks.cols, blocks.values, blocks.shape)


def test_one_pass_over_the_blocks_for_the_start_and_the_elbo_constant(problem, monkeypatch):
    """The initial q and the ELBO's sum of log x! come from one pass over the counts (on disk, a pass reads them
    all), and the totals are the CountMatrix's."""
    model, data = problem
    blocks = RowBlocks.from_matrix(data)
    passes = []
    real = RowBlocks._totals_pass
    monkeypatch.setattr(RowBlocks, "_totals_pass", lambda self, n: passes.append(n) or real(self, n))
    stochastic_vi(model, blocks, seed=0, batch_size=20, num_iters=3, progress=False)
    assert len(passes) == 1
    rows, cols, log_fact = blocks.totals()
    r, c = data.margins()
    assert torch.equal(rows, r) and torch.equal(cols, c)
    assert log_fact == pytest.approx(float(data.log_factorial_sum()), rel=1e-14)
