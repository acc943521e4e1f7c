"""Data-parallel CAVI for Poisson MF on a real Dask LocalCluster (inference/distributed.py): the same q and ELBO
trajectory as the in-memory fit_cavi to 1e-10, for several block counts."""

import numpy as np
import pytest
import torch

from inference import fit_cavi
from inference.distributed import _row_blocks, fit_cavi_distributed
from models import PoissonMF


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def problem():
    model = PoissonMF(K=4)
    _, X = model.sample(90, 70, torch.Generator().manual_seed(3))
    return model, model.prepare(X)


@pytest.mark.parametrize("num_blocks", [1, 3, 7])
def test_distributed_cavi_equals_in_memory_cavi(client, problem, num_blocks):
    model, data = problem
    ref = fit_cavi(model, data, seed=5, num_iters=25, progress=False)
    res = fit_cavi_distributed(model, data, seed=5, num_iters=25, num_blocks=num_blocks, scheduler=client,
                               progress=False)
    assert res.attrs["distributed"].endswith(f"{len(_row_blocks(data, num_blocks))} row blocks")
    np.testing.assert_allclose(res.trace["objective"], ref.trace["objective"], rtol=1e-10)
    for k, v in ref.variational.items():
        if k.startswith(("theta", "eta")):
            np.testing.assert_allclose(res.variational[k], v, rtol=1e-10)
    np.testing.assert_allclose(res.posterior["rate"], ref.posterior["rate"], rtol=1e-10)  # the same draws from q


def test_row_blocks_cover_every_row_once(problem):
    _, data = problem
    for n in (1, 4, 90, 500):
        blocks = _row_blocks(data, n)
        assert blocks[0][0] == 0 and blocks[-1][1] == data.shape[0]
        assert all(b[1] == c[0] for b, c in zip(blocks, blocks[1:]))
        assert sum(blk.nnz for _, _, blk in blocks) == data.nnz
        dense = data.to_dense()
        for a, b, blk in blocks:
            assert torch.equal(blk.to_dense(), dense[a:b])
