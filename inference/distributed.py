"""Data-parallel CAVI for Poisson MF on a Dask cluster: row blocks of the counts and their q(theta) stay on the
workers; each sweep is one round of tasks, and only K- and (M, K)-sized sufficient statistics travel.

    result = fit_cavi_distributed(model, data, seed=0, num_iters=200, num_blocks=8, scheduler="tcp://HOST:PORT")

A round on block b (rows R_b), given q(eta) from the driver (E[log eta] (M, K) and sum_m E[eta_mk] (K,)):
    z step (eq. 5) at q(theta_b), q(eta): c_theta_b = sum_m x_nm lambda_nmk (R_b, K), the block's part of
        c_eta = sum_n x_nm lambda_nmk (M, K), of sum x_nm log sum_k exp(.), and of KL(q(theta)) and sum_n E[theta_nk]
        (the ELBO of the current q, eq. 6)
    theta step (eq. 3): q(theta_b) = Ga(a_theta + c_theta_b, b_theta + sum_m E[eta_mk]), and its sum_n E[theta_nk]
The driver adds the blocks' statistics: the ELBO, then q(eta) = Ga(a_eta + c_eta, b_eta + sum_n E[theta_nk]) (eq. 4).
Round t's z step and round t + 1's theta step belong to CAVI sweeps t and t + 1, so the rounds are CAVI's sweeps
(theta, eta, z) regrouped: the same q and the same ELBO trajectory as fit_cavi, up to the order of the sums (tested to
1e-10 on a real LocalCluster).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch

from inference.assemble import check_draws_memory, check_positive_int, check_seed, variational_result
from inference.results import InferenceResult
from models.conjugate import gamma_expectations, gamma_kl

__all__ = ["fit_cavi_distributed", "connect"]


def connect(address: str, *, timeout: str = "20s", attempts: int = 3) -> Any:
    """A dask.distributed Client on the scheduler at ``address`` (tcp://HOST:PORT).

    distributed's handshake asserts that the scheduler's first message is its greeting alone. A message the
    scheduler sends to every client at that moment (another client's "cancelled-keys") can be batched with the
    greeting and fail that assert (seen in distributed 2026.8 on CI), so the handshake is tried ``attempts`` times.

    Raises:
        ValueError: no scheduler answers at ``address``.
        RuntimeError: every handshake met that race.
    """
    from distributed import Client

    for _ in range(attempts):
        try:
            return Client(address, timeout=timeout)
        except OSError as exc:
            raise ValueError(f"scheduler: could not connect to {address} ({exc})") from exc
        except AssertionError:
            continue  # the greeting came batched with a broadcast: connect again
    raise RuntimeError(f"scheduler: {attempts} handshakes with {address} each received the scheduler's greeting "
                       "batched with another message (a race in distributed's Client); try again")


def _block_round(block: Any, theta: tuple[torch.Tensor, torch.Tensor], El_e: torch.Tensor, E_e_sum: torch.Tensor,
                 prior: tuple[float, float]) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """One round on one row block (module docstring): returns the block's new q(theta) (shape, rate) and its
    statistics {"c_eta" (M, K), "x_log_norm", "kl_theta", "sum_E_theta" (K,) at the current q(theta),
    "sum_E_theta_next" (K,) at the new one}."""
    a, b = prior
    shape, rate = theta
    E_t, El_t = gamma_expectations(shape, rate)
    logits = El_t[block.rows] + El_e[block.cols]                                       # eq. 5
    log_norm = torch.logsumexp(logits, -1)
    xlam = block.values[:, None] * torch.exp(logits - log_norm[:, None])
    c_theta = torch.zeros_like(shape).index_add_(0, block.rows, xlam)
    c_eta = torch.zeros_like(El_e).index_add_(0, block.cols, xlam)
    stats = {"c_eta": c_eta, "x_log_norm": float((block.values * log_norm).sum()),
             "kl_theta": float(gamma_kl(shape, rate, a, b, El_t).sum()), "sum_E_theta": E_t.sum(0)}
    new_shape = a + c_theta                                                              # eq. 3
    new_rate = (b + E_e_sum).expand_as(new_shape)
    stats["sum_E_theta_next"] = (new_shape / new_rate).sum(0)
    return (new_shape, new_rate), stats


def _row_blocks(data: Any, num_blocks: int) -> list[tuple[int, int, Any]]:
    """The counts split into ``num_blocks`` consecutive row ranges of about equal nonzeros: (start, stop, block)
    with each block a CountMatrix of its rows (row indices from 0)."""
    from models.data import CountMatrix

    N = data.shape[0]
    crow = data.csr_structure()["crow"].cpu().numpy()
    cuts = np.searchsorted(crow, np.linspace(0, data.nnz, num_blocks + 1)[1:-1])
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < N)), N]
    out = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        lo, hi = int(crow[start]), int(crow[stop])
        out.append((start, stop, CountMatrix(data.rows[lo:hi] - start, data.cols[lo:hi], data.values[lo:hi],
                                             (stop - start, data.shape[1]), name=f"rows {start}-{stop}")))
    return out


def fit_cavi_distributed(model: Any, data: Any, *, seed: int, num_iters: int = 100, num_blocks: int | None = None,
                         scheduler: Any = None, num_samples: int = 100, progress: bool = True) -> InferenceResult:
    """CAVI for Poisson MF with the row blocks on a Dask cluster (module docstring).

    Args:
        num_blocks: row blocks (default: two per worker).
        scheduler: a dask.distributed Client, an address "tcp://HOST:PORT", or None for a LocalCluster of one
            single-threaded process per core (started and closed here).
        num_iters, seed, num_samples: as fit_cavi (its default start, so the same seed gives the same fit).

    Returns:
        the InferenceResult fit_cavi would return (method "cavi", attrs["distributed"] naming the cluster).
    """
    from distributed import Client, LocalCluster

    from models.poisson_mf.model import PoissonMF

    if not isinstance(model, PoissonMF):
        raise ValueError(f"fit_cavi_distributed fits Poisson MF; got {getattr(model, 'name', type(model).__name__)}")
    check_seed(seed)
    check_positive_int("num_iters", num_iters)
    data = model.prepare(data)
    own_cluster = None
    if scheduler is None:
        own_cluster = LocalCluster(n_workers=max(1, os.cpu_count() or 1), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        client = Client(own_cluster)
    elif isinstance(scheduler, str):
        client = connect(scheduler)
    else:
        client = scheduler
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        num_blocks = check_positive_int("num_blocks", num_blocks) if num_blocks is not None else 2 * workers
        return _run(model, data, client, seed, num_iters, min(num_blocks, data.shape[0]), num_samples, progress)
    finally:
        if own_cluster is not None or isinstance(scheduler, str):
            client.close()
        if own_cluster is not None:
            own_cluster.close()


def _run(model, data, client, seed, num_iters, num_blocks, num_samples, progress) -> InferenceResult:
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(int(seed))
    N, M = data.shape
    row_total = torch.zeros(N, dtype=data.dtype).index_add(0, data.rows, data.values)
    col_total = torch.zeros(M, dtype=data.dtype).index_add(0, data.cols, data.values)
    q0 = model.initial_q(row_total, col_total, generator)                    # fit_cavi's default start
    check_draws_memory(q0, num_samples)
    blocks = _row_blocks(data, num_blocks)
    block_futures = [client.scatter(blk, hash=False) for _, _, blk in blocks]
    thetas = [client.scatter((q0.theta_shape[a:b].contiguous(), q0.theta_rate[a:b].contiguous()), hash=False)
              for a, b, _ in blocks]
    es, er = q0.eta_shape, q0.eta_rate
    log_fact = float(data.log_factorial_sum())
    prior = (model.a_theta, model.b_theta)
    elbos, seconds = [], []
    start = time.perf_counter()
    bar = tqdm(total=num_iters, desc=f"CAVI {model.name} on {len(blocks)} blocks", disable=not progress, leave=False)
    try:
        for t in range(num_iters + 1):
            E_e, El_e = gamma_expectations(es, er)
            E_e_sum = E_e.sum(0)
            rounds = [client.submit(_block_round, blk, th, El_e, E_e_sum, prior, pure=False)
                      for blk, th in zip(block_futures, thetas)]
            stats = client.gather([client.submit(lambda r: r[1], r, pure=False) for r in rounds])
            # the ELBO of sweep t's q (eq. 6), block statistics added on the driver
            sum_E_t = sum(s["sum_E_theta"] for s in stats)
            elbo = (sum(s["x_log_norm"] for s in stats) - float((sum_E_t * E_e_sum).sum()) - log_fact
                    - sum(s["kl_theta"] for s in stats)
                    - float(gamma_kl(es, er, model.a_eta, model.b_eta, El_e).sum()))
            elbos.append(elbo)
            seconds.append(time.perf_counter() - start)
            if not math.isfinite(elbo):
                raise FloatingPointError(f"distributed CAVI diverged at sweep {t} (ELBO {elbo})")
            if t == num_iters:
                break
            thetas = [client.submit(lambda r: r[0], r, pure=False) for r in rounds]
            c_eta = sum(s["c_eta"] for s in stats)
            es = model.a_eta + c_eta                                                    # eq. 4
            er = (model.b_eta + sum(s["sum_E_theta_next"] for s in stats)).expand_as(es)
            bar.update(1)
    finally:
        bar.close()
    wall = time.perf_counter() - start
    # the final q: q(theta) as it was when its ELBO was computed (the last round's theta step is not a sweep's)
    final = client.gather(thetas)
    shape, rate = torch.cat([s for s, _ in final]), torch.cat([r for _, r in final])
    q = model.stochastic_finish(q0._replace(theta_shape=shape, theta_rate=rate, eta_shape=es, eta_rate=er))
    extra = {"num_iters": num_iters, "converged": False, "diverged": False, "init": "default",
             "objective_name": "elbo", "elbo_at": "after_z",
             "distributed": f"dask {client.scheduler.address}, {len(blocks)} row blocks"}
    trace = {"objective": torch.tensor(elbos, dtype=torch.float64),
             "seconds": torch.tensor(seconds, dtype=torch.float64)}
    return variational_result("cavi", model, data, q, generator, num_samples=num_samples, objective=elbos[-1],
                              trace=trace, seed=seed, wall_time=wall, extra=extra)
