"""Mean-field variational inference for Poisson-gamma MF: the variational family (one type for CAVI and the Pyro
guide), the expected allocation of the counts in O(nnz K), the full ELBO and the CAVI sweep. Equation numbers are
those of models/poisson_mf/model.py.

Family: q(theta_nk) = Ga(theta_shape, theta_rate), q(eta_mk) = Ga(eta_shape, eta_rate), and on every nonzero cell
q(z_nm) = Mult(x_nm, lambda_nm) with lambda_nmk ∝ exp(phi_theta_nk + phi_eta_mk) (eq. 5).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from models import _kernels
from models.conjugate import (gamma_expectations, gamma_kl, gamma_log_pdf_sum, multinomial_log_pmf,
                              sample_gamma_draws, sample_multinomial)
from models.data import CountMatrix
from models.protocol import Conditional

__all__ = ["PoissonMFParams", "Allocation", "CaviState", "PoissonMFVB"]

# Smallest normaliser S_nm accepted on the fast (shifted exp) path before the exact log-sum-exp path
# is used instead; far above float64/float32 underflow so the reciprocal x / S cannot overflow.
_FAST_PATH_MIN_NORM = 1e-30
# Initial E[theta_nk] (E[eta_mk]) added to the data-informed start so that empty rows (columns) stay positive.
_EMPTY_ROW_MEAN = 1e-3


class PoissonMFParams(NamedTuple):
    """Mean-field variational parameters (the family CAVI optimises and the Pyro guide uses).

    theta_shape, theta_rate: (N, K) q(theta_nk) = Ga(shape, rate).
    eta_shape, eta_rate: (M, K) q(eta_mk) = Ga(shape, rate).
    phi_theta: (N, K), phi_eta: (M, K) log-potentials of q(z): lambda_nmk ∝ exp(phi_theta_nk + phi_eta_mk)
        (eq. 5). Zeros mean a uniform lambda.
    """

    theta_shape: torch.Tensor
    theta_rate: torch.Tensor
    eta_shape: torch.Tensor
    eta_rate: torch.Tensor
    phi_theta: torch.Tensor
    phi_eta: torch.Tensor

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """num_samples draws of (theta, eta) from q: {"theta": (S, N, K), "eta": (S, M, K)}."""
        return {"theta": sample_gamma_draws(self.theta_shape, self.theta_rate, num_samples, generator),
                "eta": sample_gamma_draws(self.eta_shape, self.eta_rate, num_samples, generator)}

    def mean(self) -> dict[str, torch.Tensor]:
        """Means under q: {"theta": (N, K), "eta": (M, K)}."""
        return {"theta": self.theta_shape / self.theta_rate, "eta": self.eta_shape / self.eta_rate}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(theta, eta) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        return (gamma_log_pdf_sum(torch.as_tensor(draws["theta"]), self.theta_shape, self.theta_rate)
                + gamma_log_pdf_sum(torch.as_tensor(draws["eta"]), self.eta_shape, self.eta_rate))

    def to_guide(self) -> dict[str, torch.Tensor]:
        """The Pyro guide's parameters: the Gamma shapes and rates (q(z) is not part of the guide: the Pyro model
        sums z out)."""
        return {"theta_shape": self.theta_shape, "theta_rate": self.theta_rate, "eta_shape": self.eta_shape,
                "eta_rate": self.eta_rate}

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> PoissonMFParams:
        """q from guide parameters, with q(z) at its optimum for them (phi = E[log theta], E[log eta], eq. 5)."""
        ts, tr, es, er = (torch.as_tensor(params[k]) for k in ("theta_shape", "theta_rate", "eta_shape", "eta_rate"))
        return cls(ts, tr, es, er, gamma_expectations(ts, tr)[1], gamma_expectations(es, er)[1])

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PoissonMFParams:
        return cls(**{k: torch.as_tensor(params[k]) for k in cls._fields})


class Allocation(NamedTuple):
    """Expected allocation of the counts under q(z) with lambda ∝ exp(phi_theta + phi_eta).

    c_theta: (N, K) sum_m x_nm lambda_nmk = sum_m E[z_nmk].
    c_eta: (M, K) sum_n x_nm lambda_nmk = sum_n E[z_nmk].
    x_log_norm: () sum_nm x_nm log S_nm, S_nm = sum_k exp(phi_theta_nk + phi_eta_mk).
    """

    c_theta: torch.Tensor
    c_eta: torch.Tensor
    x_log_norm: torch.Tensor


class CaviState(NamedTuple):
    """CAVI state: the variational parameters and the allocation their q(z) implies."""

    params: PoissonMFParams
    alloc: Allocation


def sampled_products(data: CountMatrix, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(nnz,) A_n . B_m at the nonzero cells (n, m), in the data's (row-major) order: a sampled dense-dense product
    on the nonzero pattern, O(nnz K) with no (nnz, K) temporary. A (N, K), B (M, K); not differentiable."""
    s = data.csr_structure()
    pattern = torch.sparse_csr_tensor(s["crow"], data.cols, torch.ones_like(data.values), data.shape)
    return torch.sparse.sampled_addmm(pattern, A, B.T, beta=0.0).values()


def _gamma_log_block(shape: torch.Tensor, rate1: torch.Tensor, col: torch.Tensor, a: float, b: float
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """What a sweep needs of q(t_nk) = Ga(shape_nk, rate_k), rates shared by each column: shape (n, K), rate1 (1, K),
    col = shape.sum(-2, keepdim=True) (1, K) (the sweep has it already).

    Returns:
        E[log t] = digamma(shape) - log(rate) (n, K); (exp(E[log t] - shift), shift) with shift_i = max_k E[log t_ik]
        (the allocation's shifted exponentials); and sum_ik KL(Ga(shape_ik, rate_k) || Ga(a, b)), the elementwise KL
        (models.conjugate.gamma_kl) (a_q - a) digamma(a_q) - lgamma(a_q) + lgamma(a) + a (log b_q - log b)
        + a_q (b - b_q) / b_q with the terms in b_q summed per column.
    """
    n, K = shape.shape
    log_rate1 = torch.log(rate1)
    if _kernels.usable(shape, rate1):  # one compiled pass: digamma, lgamma, the row maxima and exponentials
        El, A, shift, kl_rows = _kernels.gamma_log_block(shape.numpy(), log_rate1.reshape(-1).numpy(), a)
        El, A, shift, kl_shape = torch.from_numpy(El), torch.from_numpy(A), torch.from_numpy(shift), kl_rows.sum()
    else:
        dg = torch.digamma(shape)
        El = dg - log_rate1
        shift = El.max(-1).values
        A = torch.exp(El - shift[:, None])
        kl_shape = ((shape - a) * dg).sum() - torch.lgamma(shape).sum()
    kl = (kl_shape + n * K * math.lgamma(a)
          + (a * n * (log_rate1 - math.log(b)) + col * (b - rate1) / rate1).sum())
    return El, (A, shift), kl


class PoissonMFVB:
    """The CAVI hooks of PoissonMF (a mixin: it reads K, a_theta, b_theta, a_eta, b_eta and the conditionals)."""

    family = PoissonMFParams
    cavi_blocks = ("theta", "eta", "z")
    cavi_options = {"init": ("default", "reference"), "elbo_at": ("after_z", "after_eta")}

    def allocate(self, data: CountMatrix, phi_theta: torch.Tensor, phi_eta: torch.Tensor, *,
                 exact: bool = False) -> Allocation:
        """Expected counts of q(z) with lambda_nmk ∝ exp(phi_theta_nk + phi_eta_mk), in O(nnz K).

        Fast path: with A = exp(phi - rowmax(phi)), S'_nm = A_theta[n] . A_eta[m] (a sampled dense-dense
        product on the nonzero pattern) and sum_m x_nm lambda_nmk = A_theta_nk sum_m (x_nm / S'_nm) A_eta_mk,
        one sparse x dense product. If some S' is too small to invert safely, the exact log-sum-exp path
        (explicit lambda on the nonzeros) is used instead; ``exact=True`` forces it (it is differentiable
        by autograd, which the derivation checks use; it is chosen whenever a phi requires a gradient).
        """
        if exact or phi_theta.requires_grad or phi_eta.requires_grad:
            return self._allocate_exact(data, phi_theta, phi_eta)
        shift_t = phi_theta.max(-1).values
        shift_e = phi_eta.max(-1).values
        A_t = torch.exp(phi_theta - shift_t[:, None])
        A_e = torch.exp(phi_eta - shift_e[:, None])
        return self._allocate_shifted(data, phi_theta, phi_eta, (A_t, shift_t), (A_e, shift_e))

    def _allocate_shifted(self, data: CountMatrix, phi_theta: torch.Tensor, phi_eta: torch.Tensor,
                          exp_theta: tuple[torch.Tensor, torch.Tensor], exp_eta: tuple[torch.Tensor, torch.Tensor]
                          ) -> Allocation:
        """The fast path of :meth:`allocate`, given exp_theta = (A_theta, shift_theta) with A_theta_nk =
        exp(phi_theta_nk - shift_theta_n), shift_theta = rowmax(phi_theta) (N,), and exp_eta likewise."""
        if phi_theta.requires_grad or phi_eta.requires_grad:
            return self._allocate_exact(data, phi_theta, phi_eta)
        (A_t, shift_t), (A_e, shift_e) = exp_theta, exp_eta
        N, M = data.shape
        s = data.csr_structure()
        row_total, col_total = data.margins()
        if _kernels.usable(A_t, A_e, data.values):  # the same products, one compiled pass over rows, one over columns
            c_t, c_e, x_log_s, min_s = _kernels.sparse_allocation(
                s["crow"].numpy(), data.cols.numpy(), s["ccol"].numpy(), s["rows_t"].numpy(),
                s["perm"].numpy(), data.values.numpy(), A_t.numpy(), A_e.numpy())
            if min_s > _FAST_PATH_MIN_NORM:
                x_log_norm = torch.tensor(x_log_s, dtype=A_t.dtype) + shift_t @ row_total + shift_e @ col_total
                return Allocation(torch.from_numpy(c_t), torch.from_numpy(c_e), x_log_norm)
            return self._allocate_exact(data, phi_theta, phi_eta)
        norm = sampled_products(data, A_t, A_e)
        if bool((norm > _FAST_PATH_MIN_NORM).all()):
            ratio = data.values / norm
            c_theta = A_t * (torch.sparse_csr_tensor(s["crow"], data.cols, ratio, (N, M)) @ A_e)
            c_eta = A_e * (torch.sparse_csr_tensor(s["ccol"], s["rows_t"], ratio[s["perm"]], (M, N)) @ A_t)
            # sum_nm x_nm (log S'_nm + shift_n + shift_m), the shifts summed through the margins of x
            x_log_norm = data.values @ torch.log(norm) + shift_t @ row_total + shift_e @ col_total
            return Allocation(c_theta, c_eta, x_log_norm)
        return self._allocate_exact(data, phi_theta, phi_eta)

    @staticmethod
    def _allocate_exact(data: CountMatrix, phi_theta: torch.Tensor, phi_eta: torch.Tensor) -> Allocation:
        logits = phi_theta[data.rows] + phi_eta[data.cols]                     # (nnz, K)
        log_norm = torch.logsumexp(logits, -1)
        xlam = data.values[:, None] * torch.exp(logits - log_norm[:, None])    # x_nm lambda_nmk
        c_theta = torch.zeros_like(phi_theta).index_add(0, data.rows, xlam)
        c_eta = torch.zeros_like(phi_eta).index_add(0, data.cols, xlam)
        return Allocation(c_theta, c_eta, (data.values * log_norm).sum())

    def _elbo_terms(self, data: CountMatrix, p: PoissonMFParams, alloc: Allocation,
                    E: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """ELBO (eq. 6) from the allocation of p's q(z) and E = (E_theta, Elog_theta, E_eta, Elog_eta).

        sum_k E[z](Elog theta + Elog eta - log lambda) summed over the nonzeros equals
        sum(c_theta (Elog theta - phi_theta)) + sum(c_eta (Elog eta - phi_eta)) + sum_nm x_nm log S_nm.
        """
        E_t, El_t, E_e, El_e = E
        z_term = (alloc.c_theta * (El_t - p.phi_theta)).sum() + (alloc.c_eta * (El_e - p.phi_eta)).sum() \
            + alloc.x_log_norm
        return (z_term - (E_t.sum(0) * E_e.sum(0)).sum() - data.log_factorial_sum()
                - gamma_kl(p.theta_shape, p.theta_rate, self.a_theta, self.b_theta, El_t).sum()
                - gamma_kl(p.eta_shape, p.eta_rate, self.a_eta, self.b_eta, El_e).sum())

    def elbo(self, data: CountMatrix, q: PoissonMFParams, *, exact: bool = False) -> torch.Tensor:
        """The full augmented-model ELBO (eq. 6) at any variational parameters, every constant included.
        ``exact=True`` uses the log-sum-exp allocation path (differentiable; also chosen under autograd)."""
        E = (*gamma_expectations(q.theta_shape, q.theta_rate), *gamma_expectations(q.eta_shape, q.eta_rate))
        return self._elbo_terms(data, q, self.allocate(data, q.phi_theta, q.phi_eta, exact=exact), E)

    def cavi_state_elbo(self, data: CountMatrix, state: CaviState) -> torch.Tensor:
        """The ELBO of a CAVI state: q holds lambda through phi, so it is the ELBO at q."""
        return self.elbo(data, state.params)

    def local_q(self, data: CountMatrix, q: PoissonMFParams) -> Conditional:
        """q(z_nm) = Mult(x_nm, lambda_nm) on the nonzero cells (eq. 5), for Monte Carlo checks of the ELBO."""
        lam = torch.softmax(q.phi_theta[data.rows] + q.phi_eta[data.cols], -1)
        return Conditional(("z",), lambda g: {"z": sample_multinomial(data.values, lam, g)},
                           lambda v: multinomial_log_pmf(v["z"], data.values, lam).sum())

    # ------------------------------------------------------------------------------------------------
    # CAVI (the loop lives in inference.cavi)

    def cavi_init(self, data: CountMatrix, generator: torch.Generator, *, init: str = "default", **_) -> CaviState:
        """Initial CAVI state.

        init="reference" (docs/REFERENCE.md section 1): q(theta_nk) = Ga(U(0.5 a, 1.5 a), U(0.5 b, 1.5 b)),
            q(eta) likewise; lambda uniform for the initial ELBO. The course's sweep updates q(z) first,
            so the first theta update sees lambda at its optimum for q(theta), q(eta): the state holds
            that lambda (phi = E[log theta], E[log eta]).
        init="default": the same random shapes, with rates chosen so that E[theta_nk] = r_n / s and
            E[eta_mk] = c_m / s (r, c: row and column totals, s = sqrt(sum(X) K)); every factor then starts
            at the independence fit E[x_nm] = r_n c_m / sum(X), split evenly over the K factors, and the
            random shapes break the symmetry through E[log theta]. On LastFM (K=40, 200 sweeps, seeds 0-14)
            it reaches a higher final ELBO than the course's start on 11 of 15 seeds (mean +0.016 in
            ELBO / sum(X), paired t = 3.8); benchmarks/poisson_mf_bench.py --inits prints the comparison.
        """
        row_total, col_total = data.margins()
        params = self.initial_q(row_total, col_total, generator, init=init)
        return CaviState(params, self.allocate(data, params.phi_theta, params.phi_eta))

    def initial_q(self, row_total: torch.Tensor, col_total: torch.Tensor, generator: torch.Generator, *,
                  init: str = "default") -> PoissonMFParams:
        """The initial q of :meth:`cavi_init` from the row totals (N,) and column totals (M,) of the counts (all that
        it reads of the data: a stochastic fit computes them in one pass over data on disk)."""
        if init not in ("default", "reference"):
            raise ValueError(f"init must be 'default' or 'reference', got {init!r}")
        N, M, K, dt, dev = row_total.shape[0], col_total.shape[0], self.K, row_total.dtype, row_total.device

        def U(lo, hi, n):
            return (lo + (hi - lo) * torch.rand(n, K, generator=generator, dtype=torch.float64)).to(dev, dt)

        ts, tr = U(0.5 * self.a_theta, 1.5 * self.a_theta, N), U(0.5 * self.b_theta, 1.5 * self.b_theta, N)
        es, er = U(0.5 * self.a_eta, 1.5 * self.a_eta, M), U(0.5 * self.b_eta, 1.5 * self.b_eta, M)
        if init == "default":
            s = math.sqrt(float(row_total.sum()) * K)
            tr = ts / (row_total[:, None] / s + _EMPTY_ROW_MEAN)
            er = es / (col_total[:, None] / s + _EMPTY_ROW_MEAN)
        phi_t, phi_e = gamma_expectations(ts, tr)[1], gamma_expectations(es, er)[1]
        return PoissonMFParams(ts, tr, es, er, phi_t, phi_e)

    def cavi_initial_elbo(self, data: CountMatrix, state: CaviState, *, init: str = "default", **_) -> torch.Tensor:
        """ELBO of the initial state; for init="reference" at a uniform lambda, as the course evaluates it."""
        p = state.params
        if init == "reference":
            p = p._replace(phi_theta=torch.zeros_like(p.phi_theta), phi_eta=torch.zeros_like(p.phi_eta))
        return self.elbo(data, p)

    def cavi_block(self, data: CountMatrix, state: CaviState, block: str) -> CaviState:
        """One block update: "theta" (eq. 3 with E[z] from the current lambda and E[eta]), "eta" (eq. 4), or "z"
        (eq. 5: lambda at E[log theta] + E[log eta])."""
        p, alloc = state
        if block == "theta":
            ts, tr = self.theta_conditional(alloc.c_theta, p.eta_shape / p.eta_rate)
            return CaviState(p._replace(theta_shape=ts, theta_rate=tr), alloc)
        if block == "eta":
            es, er = self.eta_conditional(alloc.c_eta, p.theta_shape / p.theta_rate)
            return CaviState(p._replace(eta_shape=es, eta_rate=er), alloc)
        if block == "z":
            El_t = gamma_expectations(p.theta_shape, p.theta_rate)[1]
            El_e = gamma_expectations(p.eta_shape, p.eta_rate)[1]
            return CaviState(p._replace(phi_theta=El_t, phi_eta=El_e), self.allocate(data, El_t, El_e))
        raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")

    def cavi_update(self, data: CountMatrix, state: CaviState, *, elbo_at: str = "after_z",
                    **_) -> tuple[CaviState, torch.Tensor]:
        """One CAVI sweep, the blocks "theta" (eq. 3), "eta" (eq. 4) and "z" (eq. 5) in turn, and the ELBO (eq. 6);
        the expectations each block computes are reused by the next and by the ELBO.

        The theta and eta updates use the current lambda's expected counts; the sweep is the course's
        z -> theta -> eta cycle, read from the theta update.

        Args:
            elbo_at: "after_z" (default): the ELBO after the q(z) update, which costs nothing beyond the
                update's normaliser; "after_eta": the ELBO before it, the point at which the course
                evaluates it (same trajectory, lower bound never above "after_z").

        Returns:
            (new state, ELBO) with ELBO a 0-d tensor.
        """
        if elbo_at not in self.cavi_options["elbo_at"]:
            raise ValueError(f"elbo_at must be 'after_z' or 'after_eta', got {elbo_at!r}")
        p, alloc = state
        E_e = p.eta_shape / p.eta_rate
        ts, tr = self.theta_conditional(alloc.c_theta, E_e)                                  # eq. 3
        # the rate of eq. 3 is b_theta + sum_m E[eta_mk], the same for every row: log and ratios per factor (1, K)
        tr1, col_t = tr[..., :1, :], ts.sum(-2, keepdim=True)
        El_t, exp_t, kl_t = _gamma_log_block(ts, tr1, col_t, self.a_theta, self.b_theta)
        sum_E_t = col_t / tr1                                                                 # sum_n E[theta_nk]
        es, er = self.eta_conditional(alloc.c_eta, sum_E_t)                                   # eq. 4
        er1, col_e = er[..., :1, :], es.sum(-2, keepdim=True)
        El_e, exp_e, kl_e = _gamma_log_block(es, er1, col_e, self.a_eta, self.b_eta)
        sum_E_e = col_e / er1
        new = PoissonMFParams(ts, tr, es, er, El_t, El_e)
        if elbo_at == "after_eta":
            E = (ts / tr1, El_t, es / er1, El_e)
            elbo = self._elbo_terms(data, new._replace(phi_theta=p.phi_theta, phi_eta=p.phi_eta), alloc, E)
        new_alloc = self._allocate_shifted(data, El_t, El_e, exp_t, exp_e)                   # eq. 5
        if elbo_at == "after_z":
            # eq. 6 at phi = E[log theta], E[log eta]: the terms sum E[z] (E[log theta] - phi) vanish; the rest by
            # factor sums, since each rate is shared by its column
            elbo = new_alloc.x_log_norm - (sum_E_t * sum_E_e).sum() - data.log_factorial_sum() - kl_t - kl_e
        return CaviState(new, new_alloc), elbo

    def objective_attrs(self, data: CountMatrix, elbo: float) -> dict[str, float]:
        """The course reports the ELBO divided by the total count ("rescaled ELBO")."""
        return {"elbo": float(elbo), "rescaled_elbo": float(elbo) / data.total}

    # ------------------------------------------------------------------------------------------------
    # SVI: the Pyro guide of the same family (the loop lives in inference.svi)

    svi_elbo = "meanfield"

    @property
    def guide_constraints(self) -> dict[str, Any]:
        from torch.distributions import constraints

        return {k: constraints.positive for k in ("theta_shape", "theta_rate", "eta_shape", "eta_rate")}

    def guide_init(self, data: CountMatrix, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Initial guide parameters (the CAVI default initialisation's q(theta), q(eta))."""
        return self.cavi_init(data, generator).params.to_guide()

    def guide(self, data: CountMatrix, params: dict[str, torch.Tensor]) -> None:
        """Mean-field Gamma guide q(theta) q(eta), the family CAVI optimises (params from PoissonMFParams.to_guide)."""
        import pyro
        import pyro.distributions as dist

        pyro.sample("theta", dist.Gamma(params["theta_shape"], params["theta_rate"]).to_event(2))
        pyro.sample("eta", dist.Gamma(params["eta_shape"], params["eta_rate"]).to_event(2))
