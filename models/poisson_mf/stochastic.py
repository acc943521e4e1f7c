"""Closed-form stochastic variational inference for Poisson MF (Hoffman, Blei, Wang and Paisley 2013; the Poisson
factorisation form of Gopalan, Hofman and Blei 2015), on row blocks of counts in memory or on disk.

Rows (users) are local, columns (items) global. One iteration takes a minibatch B of rows:
    local step, for n in B (``local_iters`` times):
        lambda_nmk ∝ exp(E[log theta_nk] + E[log eta_mk]) on the nonzeros of row n               (eq. 5)
        q(theta_n) = Ga(a_theta + sum_m x_nm lambda_nmk, b_theta + sum_m E[eta_mk])               (eq. 3)
    global step, with the row sums scaled by N / |B| as if every row were like the batch's:
        eta_hat = Ga(a_eta + (N / |B|) sum_{n in B} x_nm lambda_nmk, b_eta + (N / |B|) sum_{n in B} E[theta_nk])
        (shape, rate of q(eta)) <- (1 - rho_t) (shape, rate) + rho_t eta_hat,  rho_t = (tau + t)^-kappa        (eq. 8)
Gamma shape and rate are the natural parameters (up to sign and a shift), so eq. 8 is a natural-gradient step on the
ELBO (Hoffman et al., eq. 14). With B = every row, rho_t = 1 (kappa = 0) and one local iteration, an iteration is
exactly a CAVI sweep: lambda from (theta, eta), theta, then eta from that lambda and the new theta. Memory: q(theta)
(N, K) and q(eta) (M, K) plus the batch's (nnz_B, K) responsibilities; the counts are read by row blocks
(:class:`models.blocks.RowBlocks`, memory-mapped from disk when the matrix does not fit in memory). The local step
reads E[log eta] of the batch's columns only; the blend of eq. 8 is O(M K) per iteration.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.blocks import RowBlocks
from models.conjugate import gamma_expectations, gamma_kl
from models.data import CountMatrix

__all__ = ["PoissonMFStochastic"]


class PoissonMFStochastic:
    """The stochastic-VI hooks of PoissonMF (a mixin: it reads K and the hyperparameters and ``initial_q``)."""

    def stochastic_init(self, blocks: RowBlocks, generator: torch.Generator, init: str = "default") -> Any:
        """The initial q of CAVI (models/poisson_mf/vb.py cavi_init), from one pass over the row blocks."""
        row_total, col_total, _ = blocks.totals()
        return self.initial_q(row_total, col_total, generator, init=init)

    def stochastic_step(self, blocks: RowBlocks, q: Any, rows: np.ndarray, rho: float, local_iters: int = 1) -> Any:
        """One iteration on the minibatch ``rows`` (B,) with step rho (module docstring, eq. 8): the local step for
        the batch's q(theta_n), then q(eta) moved by rho towards the estimate from the batch. q(theta)'s rows are
        written in place (O(B K) per iteration, not O(N K)); phi is left as it was (:meth:`stochastic_finish` sets
        it)."""
        N = blocks.shape[0]
        batch = blocks.counts(rows)
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        # the batch's columns J only: E[log eta_J] and the allocation on (B, |J|), not on all M columns
        J, local_cols = torch.unique(batch.cols, return_inverse=True)
        batch = CountMatrix(batch.rows, local_cols, batch.values, (len(rows), len(J)))
        El_e = gamma_expectations(q.eta_shape[J], q.eta_rate[J])[1]
        ts_B, tr_B = q.theta_shape[idx], q.theta_rate[idx]
        rate_B = (self.b_theta + (q.eta_shape / q.eta_rate).sum(0)).expand(len(rows), -1)    # eq. 3 rate
        for _ in range(local_iters):
            alloc = self.allocate(batch, gamma_expectations(ts_B, tr_B)[1], El_e)          # eq. 5, O(nnz_B K)
            ts_B = self.a_theta + alloc.c_theta                                               # eq. 3 shape
            tr_B = rate_B
        c_eta = torch.zeros_like(q.eta_shape).index_copy_(0, J, alloc.c_eta)             # 0 off the batch's columns
        scale = N / len(rows)
        es_hat = self.a_eta + scale * c_eta
        er_hat = self.b_eta + scale * (ts_B / tr_B).sum(0)
        q.theta_shape[idx], q.theta_rate[idx] = ts_B, tr_B
        es = (1 - rho) * q.eta_shape + rho * es_hat                                          # eq. 8
        er = (1 - rho) * q.eta_rate + rho * er_hat
        return q._replace(eta_shape=es, eta_rate=er)

    def stochastic_constants(self, blocks: RowBlocks) -> float:
        """sum_nm log x_nm! (the ELBO's constant), one pass over the blocks."""
        return blocks.totals()[2]

    def stochastic_start(self, q: Any, constants: float | None = None) -> Any:
        """A private copy of q to update in place (the caller's q is left alone)."""
        return q._replace(theta_shape=q.theta_shape.clone(), theta_rate=q.theta_rate.clone())

    def stochastic_finish(self, q: Any) -> Any:
        """q with phi = E[log theta], E[log eta] (the log-potentials of q(z) at its optimum, as CAVI's state holds)."""
        return q._replace(phi_theta=gamma_expectations(q.theta_shape, q.theta_rate)[1],
                          phi_eta=gamma_expectations(q.eta_shape, q.eta_rate)[1])

    def stochastic_elbo(self, blocks: RowBlocks, q: Any, log_factorial_sum: float,
                        rows_per_block: int = 65_536) -> float:
        """The ELBO (eq. 6) at q(theta) q(eta) with q(z) at its optimum, one pass over the row blocks (the z term
        sum_nm x_nm log sum_k exp(E[log theta_nk] + E[log eta_mk]) block by block)."""
        E_t, El_t = gamma_expectations(q.theta_shape, q.theta_rate)
        E_e, El_e = gamma_expectations(q.eta_shape, q.eta_rate)
        z_term = 0.0
        for a, b in blocks.ranges(rows_per_block):
            z_term += float(self.allocate(blocks.counts(np.arange(a, b)), El_t[a:b], El_e).x_log_norm)
        return (z_term - float((E_t.sum(0) * E_e.sum(0)).sum()) - log_factorial_sum
                - float(gamma_kl(q.theta_shape, q.theta_rate, self.a_theta, self.b_theta, El_t).sum())
                - float(gamma_kl(q.eta_shape, q.eta_rate, self.a_eta, self.b_eta, El_e).sum()))

