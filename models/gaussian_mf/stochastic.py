"""Closed-form stochastic variational inference for Gaussian MF with the fixed prior (the course's model; Hoffman,
Blei, Wang and Paisley 2013), on row blocks of the ratings (models.blocks.RowBlocks, in memory or memory-mapped).

Rows (users) are local, columns (items) and the noise precision global; the family is CAVI's (models/gaussian_mf/vb.py):
q(u_i) = N(ubar_i, Phi_i), q(v_j) = N(vbar_j, Psi_j), q(alpha) = Ga(a, b) when alpha has a prior. The offset is the
mean of all the ratings (one pass), never a batch's. One iteration takes a minibatch B of rows:
    local step (exact in one pass: q(u_i) depends on the globals only), for i in B, eq. 4 of vb.py:
        Phi_i^-1 = I / sigma_U^2 + E[alpha] sum_{j in Omega_i} (vbar_j vbar_j^T + Psi_j),
        ubar_i   = Phi_i E[alpha] sum_j (r_ij - offset) vbar_j
    global step, the batch's sums scaled by N / |B| as if every row were like the batch's:
        q(v_j) in natural parameters (precision P_j = Psi_j^-1, h_j = P_j vbar_j):
            P_hat_j = I / sigma_V^2 + E[alpha] (N / |B|) sum_{i in B, j in Omega_i} (ubar_i ubar_i^T + Phi_i)
            h_hat_j = E[alpha] (N / |B|) sum_{i in B} (r_ij - offset) ubar_i
            (P_j, h_j) <- (1 - rho_t) (P_j, h_j) + rho_t (P_hat_j, h_hat_j)                                     (eq. S1)
        then, with that q(v) and the batch's q(u) (noise prior only):
            a_hat = a0 + (N / |B|) n_B / 2,  b_hat = b0 + (N / |B|) E[SSE_B] / 2
            (a, b) <- (1 - rho_t) (a, b) + rho_t (a_hat, b_hat)                                            (eq. S2)
(P, h) and (a - 1, -b) are the natural parameters of the Gaussian and the Gamma, so S1 and S2 are natural-gradient
steps (Hoffman et al., eq. 14); blending the means and covariances instead would not be. With B = every row and
rho = 1 an iteration is exactly a CAVI sweep (blocks U, V, alpha). Per iteration the cost is O(nnz_B K^2 + B K^3)
for the batch and O(M K^3) for q(v) (every column's precision moves towards the prior's); memory holds q(u)
(N, K, K), q(v) (M, K, K) and the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from models.blocks import RowBlocks
from models.data import gram_rhs, partner_sum
from models.gaussian_mf.vb import VBState

__all__ = ["GaussianMFStochastic", "RatingConstants", "StochasticState"]


class RatingConstants(NamedTuple):
    """What stochastic VI needs of all the ratings: their number n and the offset (their mean, or 0)."""

    n: int
    offset: float


class StochasticState(NamedTuple):
    """The running state: q (a VBState, updated in place row by row), q(v)'s natural parameters V_prec (M, K, K) and
    V_h (M, K), and the constants."""

    q: VBState
    V_prec: torch.Tensor
    V_h: torch.Tensor
    constants: RatingConstants


class GaussianMFStochastic:
    """The stochastic-VI hooks of GaussianMF (a mixin: it reads K, prior, sigma_U, sigma_V, noise_prior, center and
    the CAVI helpers of GaussianMFVB)."""

    def _check_stochastic(self) -> None:
        if self.prior != "fixed":
            raise ValueError("stochastic VI for gaussian-mf is implemented for prior='fixed' (the course's model); "
                             "use CAVI or Gibbs for prior='bpmf' (on the command line: --prior fixed)")

    def stochastic_constants(self, blocks: RowBlocks) -> RatingConstants:
        """n and the offset, from one pass over the blocks."""
        self._check_stochastic()
        n = blocks.nnz
        if n == 0:
            raise ValueError("stochastic VI needs at least one rating; the blocks hold none")
        return RatingConstants(n, blocks.value_sum() / n if self.center else 0.0)

    def stochastic_init(self, blocks: RowBlocks, generator: torch.Generator) -> VBState:
        """CAVI's initial q (the same random draws)."""
        self._check_stochastic()
        return self.initial_params(blocks.shape, blocks.nnz, blocks.dtype, generator)

    def stochastic_start(self, q: VBState, constants: RatingConstants) -> StochasticState:
        """A private copy of q with q(v)'s natural parameters."""
        self._check_stochastic()
        if q.has_hyper:
            raise ValueError("stochastic VI for gaussian-mf takes a q of the fixed prior; this one has BPMF blocks")
        P = torch.cholesky_inverse(torch.linalg.cholesky(q.V_cov))
        q = q._replace(U_mean=q.U_mean.clone(), U_cov=q.U_cov.clone())
        return StochasticState(q, P, (P @ q.V_mean[..., None])[..., 0], constants)

    def stochastic_step(self, blocks: RowBlocks, state: StochasticState, rows: np.ndarray, rho: float,
                        local_iters: int = 1) -> StochasticState:
        """One iteration on the minibatch ``rows`` (B,, sorted) with step rho (module docstring): q(u_i) for the batch
        (written in place), then q(v) by eq. S1 and q(alpha) by eq. S2. ``local_iters`` has no effect here: the
        local step is exact in one pass."""
        q, c = state.q, state.constants
        N = blocks.shape[0]
        batch = blocks.ratings(rows)
        idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        E_alpha, _ = self._E_alpha(q)
        dt = q.U_mean.dtype
        eye = torch.eye(self.K, dtype=dt)
        # local step (eq. 4 for the batch's rows)
        gram, cov_sum, rhs = self._moment_sums(batch, "U", q.V_mean, q.V_cov, c.offset)
        U_cov_B = torch.cholesky_inverse(torch.linalg.cholesky(eye / self.sigma_U ** 2 + E_alpha * (gram + cov_sum)))
        U_mean_B = (U_cov_B @ (E_alpha * rhs)[..., None])[..., 0]
        q.U_mean[idx], q.U_cov[idx] = U_mean_B, U_cov_B
        # global step for q(v) in natural parameters (eq. S1)
        scale = N / len(rows)
        uu, rhs_v = gram_rhs(batch, "V", U_mean_B, batch.values - c.offset)
        P_hat = eye / self.sigma_V ** 2 + (E_alpha * scale) * (uu + partner_sum(batch, "V", U_cov_B))
        h_hat = (E_alpha * scale) * rhs_v
        P = (1 - rho) * state.V_prec + rho * P_hat                                                    # eq. S1
        h = (1 - rho) * state.V_h + rho * h_hat
        V_cov = torch.cholesky_inverse(torch.linalg.cholesky(P))
        q = q._replace(V_mean=(V_cov @ h[..., None])[..., 0], V_cov=V_cov)
        if self.noise_prior is not None:                                                               # eq. S2
            a0, b0 = self.noise_prior
            local = q._replace(U_mean=U_mean_B, U_cov=U_cov_B)
            a_hat = a0 + scale * 0.5 * len(batch)
            b_hat = b0 + scale * 0.5 * self.expected_sse(batch, local, c.offset)
            q = q._replace(a_alpha=(1 - rho) * q.a_alpha + rho * a_hat, b_alpha=(1 - rho) * q.b_alpha + rho * b_hat)
        return StochasticState(q, P, h, c)

    def stochastic_finish(self, state: StochasticState) -> VBState:
        return state.q

    def stochastic_elbo(self, blocks: RowBlocks, state: StochasticState, constants: RatingConstants,
                        rows_per_block: int = 65_536) -> float:
        """The ELBO (vb.py eq. 8) at the state's q, E[SSE] summed over row blocks."""
        q = state.q
        sse = 0.0
        for a, b in blocks.ranges(rows_per_block):
            part = q._replace(U_mean=q.U_mean[a:b], U_cov=q.U_cov[a:b])
            sse = sse + self.expected_sse(blocks.ratings(np.arange(a, b)), part, constants.offset)
        return float(self.elbo_from_sse(q, constants.n, torch.as_tensor(sse, dtype=q.U_mean.dtype)))
