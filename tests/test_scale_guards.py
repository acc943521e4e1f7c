"""What a fit costs beyond its sweeps, at scale: the cells a result tracks are drawn in O(cells), not by permuting
N x M cells; the pointwise log-likelihood is counted without computing one N x M draw of it; and draws from q that
would not fit in memory are refused before the fit, naming num_samples."""

import numpy as np
import pytest
import torch

from inference import fit_cavi
from inference.assemble import DRAWS_MEMORY_FACTOR, check_draws_memory, pointwise_log_likelihood
from models import PoissonMF, as_count_matrix
from models.data import PERMUTATION_MAX, sample_indices
from models.poisson_mf.hierarchical import HierarchicalPoissonMF


def test_sample_indices_keeps_the_permutation_prefix_up_to_its_limit():
    for n, k in ((10, 4), (10, 30), (PERMUTATION_MAX, 5)):
        got = sample_indices(n, k, torch.Generator().manual_seed(3))
        assert torch.equal(got, torch.randperm(n, generator=torch.Generator().manual_seed(3))[:k])


def test_sample_indices_above_the_limit_are_distinct_uniform_and_in_range():
    n = 10**12  # (a permutation would need 8 TB)
    got = sample_indices(n, 20_000, torch.Generator().manual_seed(0))
    assert got.dtype == torch.int64 and got.numel() == 20_000 and got.unique().numel() == 20_000
    assert int(got.min()) >= 0 and int(got.max()) < n
    u = got.double() / n  # uniform on [0, 1): mean 1/2, sd of the mean 0.289 / sqrt(20000) = 0.002
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float((u < 0.25).double().mean()) - 0.25) < 0.015


def test_sample_indices_refills_repeats(monkeypatch):
    """Above the limit (lowered here to 10), draws that repeat are drawn again until k distinct ones."""
    import models.data

    monkeypatch.setattr(models.data, "PERMUTATION_MAX", 10)
    for seed in range(20):
        got = sample_indices(20, 19, torch.Generator().manual_seed(seed))
        assert got.numel() == 19 and got.unique().numel() == 19 and int(got.max()) < 20


def _huge_sparse(N: int, M: int, nnz: int) -> object:
    import scipy.sparse

    keys = np.unique(np.random.default_rng(0).integers(0, N * M, nnz))
    return as_count_matrix(scipy.sparse.csr_matrix((np.ones(keys.size), (keys // M, keys % M)), shape=(N, M)))


def test_tracked_cells_of_a_matrix_with_10_billion_cells():
    model = PoissonMF(K=2)
    data = model.prepare(_huge_sparse(100_000, 100_000, 3000))
    r, c = model.invariant_cells(data)
    assert r.numel() == 2000 and len(set(zip(r.tolist(), c.tolist()))) == 2000
    stored = set(zip(data.rows.tolist(), data.cols.tolist()))
    assert sum((i, j) in stored for i, j in zip(r[:1000].tolist(), c[:1000].tolist())) == 1000  # half stored cells
    assert int(r.max()) >= 50_000 and int(c.max()) >= 50_000  # the uniform half reaches the far corner


@pytest.mark.parametrize("model", [PoissonMF(K=3), HierarchicalPoissonMF(K=3)], ids=["poisson-mf", "hpf"])
def test_pointwise_size_is_what_pointwise_log_lik_returns(model):
    data = model.prepare(_huge_sparse(7, 5, 12))
    q = fit_cavi(model, data, seed=0, num_iters=2, num_samples=3, progress=False).posterior
    one = model.pointwise_log_lik(data, **{k: torch.as_tensor(np.asarray(v))[:1, :1] for k, v in q.items()})
    assert model.pointwise_size(data) == sum(int(np.prod(v.shape[2:])) for v in one.values()) == 35


def test_a_pointwise_log_likelihood_too_large_to_store_is_not_computed():
    class Counted(PoissonMF):
        def pointwise_log_lik(self, data, **draws):
            raise AssertionError("computed")

    model = Counted(K=2)
    data = model.prepare(_huge_sparse(100_000, 100_000, 3000))
    attrs = {}
    draws = {"theta": torch.ones(1, 2, 100_000, 2), "eta": torch.ones(1, 2, 100_000, 2)}
    assert pointwise_log_likelihood(model, data, draws, attrs) == {}
    assert attrs["log_likelihood"].startswith("not stored: 2 draws x 10000000000 observations")


def test_draws_that_would_not_fit_are_refused_before_the_fit(monkeypatch):
    model = PoissonMF(K=4)
    _, X = model.sample(30, 20, torch.Generator().manual_seed(0))
    q = model.cavi_init(model.prepare(X), torch.Generator().manual_seed(0)).params
    per_draw = (30 + 20) * 4 * 8  # theta (N, K) and eta (M, K), float64
    check_draws_memory(q, 10, available=int(DRAWS_MEMORY_FACTOR * per_draw * 10))  # exactly fits
    with pytest.raises(ValueError, match=r"num_samples=11: .* ask for num_samples <= 10 \(--samples"):
        check_draws_memory(q, 11, available=int(DRAWS_MEMORY_FACTOR * per_draw * 10))

    import inference.assemble

    monkeypatch.setattr(inference.assemble, "available_memory", lambda: int(DRAWS_MEMORY_FACTOR * per_draw * 50))
    swept = []
    with pytest.raises(ValueError, match="num_samples=100"):
        fit_cavi(model, X, seed=0, num_iters=5, progress=False, callback=lambda *a: swept.append(1))
    assert swept == []  # refused before the first sweep
    assert fit_cavi(model, X, seed=0, num_iters=5, num_samples=50, progress=False).posterior["theta"].shape[1] == 50
