"""The compiled loops (models/_kernels.c through models/_kernels.py): each equals the torch expression it stands
for, digamma and lgamma equal mpmath's to 1e-14, the results do not depend on the number of threads or on earlier
calls, a forked child gets them too, and a CAVI sweep through them follows the torch sweep. Every test here insists
on the compiled loops (INFERLAB_KERNELS=c): a machine that cannot build them fails here, not silently elsewhere."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch

from models import PoissonMF, _kernels
from models.data import CountMatrix, as_count_matrix
from models.poisson_mf.hierarchical import HierarchicalPoissonMF


@pytest.fixture(autouse=True)
def _compiled_loops(monkeypatch):
    monkeypatch.setenv("INFERLAB_KERNELS", "c")
    assert _kernels._library() is not None


def _exact(x: float) -> tuple[float, float]:
    with mpmath.workdps(40):
        return float(mpmath.digamma(x)), float(mpmath.loggamma(x))


# the recurrence's edge (8), digamma's root (1.4616...), lgamma's zeros (1, 2), tiny and huge shapes
_POINTS = np.concatenate([[1e-300, 1e-8, 0.3, 1.0, 1.4616321449683623, 2.0, 7.999999999, 8.0, 8.000000001, 1e300],
                          np.logspace(-6, 6, 150), np.random.default_rng(0).uniform(0.01, 20, 150)])


def test_digamma_and_lgamma_equal_mpmath_to_1e14():
    dg, lg = _kernels.digamma_lgamma(_POINTS)
    exact = np.array([_exact(x) for x in _POINTS])
    scale = np.maximum(1.0, np.abs(exact))
    assert (np.abs(dg - exact[:, 0]) / scale[:, 0]).max() < 1e-14
    assert (np.abs(lg - exact[:, 1]) / scale[:, 1]).max() < 1e-14


def test_digamma_lgamma_at_zero_and_its_inputs():
    dg, lg = _kernels.digamma_lgamma(np.array([0.0, 1.0]))
    assert dg[0] == -np.inf and lg[0] == np.inf
    with pytest.raises(TypeError, match="x must be float64"):
        _kernels.digamma_lgamma(np.ones(3, dtype=np.float32))


def _torch_gamma_block(shape: np.ndarray, log_rate: np.ndarray, a: float):
    t = torch.as_tensor(shape)
    dg = torch.digamma(t)
    El = dg - torch.as_tensor(log_rate)
    shift = El.max(-1).values
    kl = ((t - a) * dg - torch.lgamma(t)).sum(-1)
    return El.numpy(), torch.exp(El - shift[:, None]).numpy(), shift.numpy(), kl.numpy()


@pytest.mark.parametrize("K", [1, 7, 40])
def test_gamma_log_block_equals_the_torch_expressions(K):
    g = np.random.default_rng(K)
    n = 53
    shape = np.concatenate([0.3 + g.gamma(0.5, 2.0, size=(n - 3, K)),     # mostly below the recurrence's edge
                            8.0 + g.gamma(2.0, 50.0, size=(2, K)),        # a row all above it
                            10.0 ** g.uniform(-5, 5, size=(1, K))])
    log_rate = g.normal(size=K)
    got = _kernels.gamma_log_block(shape, log_rate, 0.7)
    want = _torch_gamma_block(shape, log_rate, 0.7)
    for name, x, y in zip(("El", "A", "shift", "kl_rows"), got, want):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-13 * np.abs(y).max(), err_msg=name)
    with pytest.raises(ValueError, match="log_rate must have shape"):
        _kernels.gamma_log_block(shape, log_rate[:-1] if K > 1 else np.zeros(2), 0.7)


def _pattern(g: np.random.Generator, N: int, M: int, density: float) -> CountMatrix:
    dense = g.poisson(3.0, size=(N, M)) * (g.random((N, M)) < density)
    dense[0] = 0        # an empty row
    dense[:, -1] = 0    # an empty column
    return as_count_matrix(dense.astype(np.float64))


def _allocation_args(X: CountMatrix, A: np.ndarray, B: np.ndarray):
    s = X.csr_structure()
    return (s["crow"].numpy(), X.cols.numpy(), s["ccol"].numpy(), s["rows_t"].numpy(), s["perm"].numpy(),
            X.values.numpy(), A, B)


@pytest.mark.parametrize("K", [1, 5, 33])
def test_sparse_allocation_equals_the_dense_computation(K):
    g = np.random.default_rng(10 + K)
    X = _pattern(g, 23, 31, 0.3)
    A, B = g.gamma(1.0, 1.0, size=(23, K)), g.gamma(1.0, 1.0, size=(31, K))
    c_row, c_col, x_log_s, min_s = _kernels.sparse_allocation(*_allocation_args(X, A, B))
    dense = X.to_dense().numpy()
    S = A @ B.T
    ratio = np.where(dense > 0, dense / S, 0.0)
    np.testing.assert_allclose(c_row, A * (ratio @ B), rtol=1e-13)
    np.testing.assert_allclose(c_col, B * (ratio.T @ A), rtol=1e-13)
    assert x_log_s == pytest.approx(float((dense * np.log(S))[dense > 0].sum()), rel=1e-13)
    assert min_s == pytest.approx(float(S[dense > 0].min()), rel=1e-15)


def test_sparse_allocation_of_no_counts_and_bad_patterns():
    A, B = np.ones((3, 2)), np.ones((4, 2))
    empty = np.zeros(0, dtype=np.int64)  # a row block with no counts (stochastic VI's batches can be)
    c_row, c_col, x_log_s, min_s = _kernels.sparse_allocation(
        np.zeros(4, dtype=np.int64), empty, np.zeros(5, dtype=np.int64), empty, empty, np.zeros(0), A, B)
    assert (c_row == 0).all() and (c_col == 0).all() and x_log_s == 0.0 and min_s == np.inf
    X = _pattern(np.random.default_rng(1), 3, 4, 0.9)
    with pytest.raises(ValueError, match="inconsistent pattern"):
        _kernels.sparse_allocation(*_allocation_args(X, A, np.ones((5, 2))))
    with pytest.raises(TypeError, match="crow must be int64"):
        args = list(_allocation_args(X, A, B))
        args[0] = args[0].astype(np.int32)
        _kernels.sparse_allocation(*args)


def test_results_do_not_depend_on_threads_or_earlier_calls():
    g = np.random.default_rng(3)
    shape, log_rate = 0.5 + g.gamma(0.5, 3.0, size=(400, 12)), g.normal(size=12)
    X = _pattern(g, 400, 300, 0.05)
    A, B = g.gamma(1.0, 1.0, size=(400, 12)), g.gamma(1.0, 1.0, size=(300, 12))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _kernels.gamma_log_block(shape, log_rate, 1.0), _kernels.sparse_allocation(*_allocation_args(X, A, B))
        torch.set_num_threads(2)
        two = _kernels.gamma_log_block(shape, log_rate, 1.0), _kernels.sparse_allocation(*_allocation_args(X, A, B))
    finally:
        torch.set_num_threads(threads)
    for x, y in zip([*one[0], *one[1]], [*two[0], *two[1]]):
        assert np.array_equal(x, y)  # bitwise: each row is summed by one thread in a fixed order
    # scratch memory is reused between calls: what a call returned must not change with the next call
    first = [np.copy(a) for a in one[0]]
    _kernels.gamma_log_block(shape[:7] * 3.0, log_rate, 2.0)
    _kernels.digamma_lgamma(shape * 5.0)
    for x, y in zip(one[0], first):
        assert np.array_equal(x, y)


def _child_block(_):
    g = np.random.default_rng(4)
    return _kernels.gamma_log_block(0.5 + g.gamma(0.5, 3.0, size=(300, 9)), g.normal(size=9), 1.0)[0]


def test_a_forked_child_runs_the_loops():
    """GNU OpenMP hangs a forked child that starts threads its parent's runtime started: after a fork the loops
    run in one thread (and give the same numbers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # (the tests run torch, and so the loops, in one thread: conftest.py)
    try:
        here = _child_block(None)  # the parent's OpenMP threads are started
        with multiprocessing.get_context("fork").Pool(1) as pool:
            there = pool.map_async(_child_block, [0]).get(timeout=60)[0]
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(here, there)


def test_usable_only_for_float64_cpu_tensors_outside_autograd(monkeypatch):
    x = torch.ones(3, dtype=torch.float64)
    assert _kernels.usable(x)
    assert not _kernels.usable(x.float())
    assert not _kernels.usable(x.clone().requires_grad_())
    monkeypatch.setenv("INFERLAB_KERNELS", "torch")
    assert not _kernels.usable(x)
    monkeypatch.setenv("INFERLAB_KERNELS", "fast")
    with pytest.raises(ValueError, match="INFERLAB_KERNELS must be"):
        _kernels.usable(x)


def test_a_missing_compiler_warns_and_falls_back_or_fails_when_insisted(monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    _kernels._library.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="INFERLAB_KERNELS=c: the compiled CAVI loops could not be built"):
            _kernels._library()
        _kernels._library.cache_clear()
        monkeypatch.setenv("INFERLAB_KERNELS", "auto")
        with pytest.warns(RuntimeWarning, match="torch expressions are used instead"):
            assert not _kernels.usable(torch.ones(2, dtype=torch.float64))
        assert not list(tmp_path.glob("kernels/*.so"))
        assert _kernels.loaded() == "torch"
        monkeypatch.setenv("INFERLAB_KERNELS", "c")  # insisting later in the same process still fails loudly
        with pytest.raises(RuntimeError, match="could not be built in this process"):
            _kernels.usable(torch.ones(2, dtype=torch.float64))
    finally:
        _kernels._library.cache_clear()
        monkeypatch.delenv("CC")
        monkeypatch.delenv("INFERLAB_CACHE")


def _sweeps(model, X: CountMatrix, sweeps: int):
    state = model.cavi_init(X, torch.Generator().manual_seed(0))
    elbos = []
    for _ in range(sweeps):
        state, elbo = model.cavi_update(X, state)
        elbos.append(float(elbo))
    return state, np.array(elbos)


@pytest.mark.parametrize("model", [PoissonMF(K=6, a_theta=0.3, b_theta=1.0, a_eta=0.7, b_eta=0.4),
                                   HierarchicalPoissonMF(K=4)], ids=["poisson-mf", "hpf"])
def test_cavi_sweeps_follow_the_torch_sweeps(model, monkeypatch):
    X = _pattern(np.random.default_rng(7), 60, 45, 0.2)
    compiled, elbo_c = _sweeps(model, X, 40)
    monkeypatch.setenv("INFERLAB_KERNELS", "torch")
    reference, elbo_t = _sweeps(model, X, 40)
    np.testing.assert_allclose(elbo_c, elbo_t, rtol=1e-12)
    for name, x in compiled.params._asdict().items():
        np.testing.assert_allclose(x.numpy(), getattr(reference.params, name).numpy(), rtol=1e-9, err_msg=name)


def test_a_result_records_which_loops_computed_it(monkeypatch):
    from inference import fit_cavi

    X = _pattern(np.random.default_rng(8), 20, 15, 0.4)
    model = PoissonMF(K=2)
    compiled = fit_cavi(model, X, seed=0, num_iters=3, progress=False, num_samples=20)
    assert compiled.attrs["versions"]["kernels"] == Path(_kernels._library()._name).name
    monkeypatch.setenv("INFERLAB_KERNELS", "torch")
    reference = fit_cavi(model, X, seed=0, num_iters=3, progress=False, num_samples=20)
    assert reference.attrs["versions"]["kernels"] == "torch"
    assert reference.attrs["elbo"] == pytest.approx(compiled.attrs["elbo"], rel=1e-13)
