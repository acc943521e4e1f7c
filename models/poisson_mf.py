"""Poisson-gamma matrix factorisation for count matrices (e.g. LastFM listening counts).

Notation:
    N rows (users), M columns (items), K factors, nnz nonzero counts.
    x_nm ~ Po(sum_k theta_nk eta_mk),  theta_nk ~ Ga(a_theta, b_theta),  eta_mk ~ Ga(a_eta, b_eta)  (rate form)
    augmented: x_nm = sum_k z_nmk,  z_nmk ~ Po(theta_nk eta_mk)                                  (eq. 1)

Complete conditionals (shared by Gibbs and CAVI, REFERENCE.md section 1):
    z_nm | .     ~ Mult(x_nm, p_nm),  p_nmk ∝ theta_nk eta_mk                                     (eq. 2)
    theta_nk | . ~ Ga(a_theta + sum_m z_nmk, b_theta + sum_m eta_mk)                              (eq. 3)
    eta_mk | .   ~ Ga(a_eta + sum_n z_nmk, b_eta + sum_n theta_nk)                                 (eq. 4)

Mean-field CAVI replaces each statistic by its expectation under q:
    q(z_nm) = Mult(x_nm, lambda_nm), lambda_nmk ∝ exp(phi_theta_nk + phi_eta_mk),
    with phi = E[log theta], E[log eta] at the optimum                                            (eq. 5)
ELBO (every constant included):
    sum_nm sum_k E[z_nmk](E[log theta_nk] + E[log eta_mk] - log lambda_nmk) - sum_nmk E[theta_nk] E[eta_mk]
    - sum_nm log x_nm! - KL(q(theta) || p(theta)) - KL(q(eta) || p(eta))                          (eq. 6)
Only nonzero x_nm carry a q(z); zero cells enter through sum_nmk E[theta_nk] E[eta_mk] =
(sum_n E[theta_n]) . (sum_m E[eta_m]), so nothing N x M is ever built.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from models.conjugate import (gamma_expectations, gamma_kl, gamma_log_pdf, gamma_posterior, poisson_log_pmf,
                              sample_gamma, sample_multinomial)
from models.data import CountMatrix, as_count_matrix
from inference.results import register_model

# torch warns that CSR tensors are beta and that invariant checks are off; both are expected here.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

__all__ = ["PoissonMF", "PoissonMFParams", "Allocation", "CaviState", "GibbsState", "recommend", "factor_top_items",
           "expected_rates"]

# Smallest normaliser S_nm accepted on the fast (shifted exp) path before the exact log-sum-exp path
# is used instead; far above float64/float32 underflow so the reciprocal x / S cannot overflow.
_FAST_PATH_MIN_NORM = 1e-30
# Largest (draws x nnz x K) evaluated in one batch by log_joint.
_BATCHED_LOG_JOINT_MAX = 20_000_000
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


class GibbsState(NamedTuple):
    """Gibbs state: theta (N, K), eta (M, K). z is resampled from scratch each sweep."""

    theta: torch.Tensor
    eta: torch.Tensor


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@register_model
@dataclass(frozen=True)
class PoissonMF:
    """Poisson-gamma matrix factorisation: hyperparameters only (no data, no fitted state).

    Args:
        K: number of factors (>= 1).
        a_theta, b_theta: Gamma(shape, rate) prior of theta_nk.
        a_eta, b_eta: Gamma(shape, rate) prior of eta_mk.

    Course settings: ``PoissonMF.course_lastfm()`` (K=40, a=1, b=0.5) and ``PoissonMF.course_synthetic()``
    (K=10, a=0.1, b=1).
    """

    K: int
    a_theta: float = 1.0
    b_theta: float = 0.5
    a_eta: float = 1.0
    b_eta: float = 0.5

    name = "poisson-mf"
    sites = ("theta", "eta")
    dims = {"theta": ("row", "factor"), "eta": ("col", "factor")}

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        object.__setattr__(self, "K", int(self.K))
        for field_name in ("a_theta", "b_theta", "a_eta", "b_eta"):
            object.__setattr__(self, field_name, _positive_finite(field_name, getattr(self, field_name)))

    @classmethod
    def course_lastfm(cls, K: int = 40) -> PoissonMF:
        """The course's LastFM setting: a_theta = a_eta = 1, b_theta = b_eta = 0.5."""
        return cls(K=K, a_theta=1.0, b_theta=0.5, a_eta=1.0, b_eta=0.5)

    @classmethod
    def course_synthetic(cls, K: int = 10) -> PoissonMF:
        """The course's synthetic setting: a = 0.1, b = 1 for both factors."""
        return cls(K=K, a_theta=0.1, b_theta=1.0, a_eta=0.1, b_eta=1.0)

    def hyperparameters(self) -> dict[str, float]:
        return {"K": self.K, "a_theta": self.a_theta, "b_theta": self.b_theta, "a_eta": self.a_eta,
                "b_eta": self.b_eta}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> CountMatrix:
        """Validate and convert any accepted input (dense, scipy.sparse, long DataFrame) to a CountMatrix."""
        return as_count_matrix(data, dtype=dtype, device=device)

    # ------------------------------------------------------------------------------------------------
    # Generative model

    def simulate(self, size: tuple[int, int], generator: torch.Generator) -> tuple[GibbsState, CountMatrix]:
        """A prior draw as a Gibbs state and counts of shape ``size`` = (N, M) (for SBC and Geweke tests)."""
        params, X = self.sample(*size, generator)
        return GibbsState(params["theta"], params["eta"]), X

    def resimulate(self, state: GibbsState, data: CountMatrix, generator: torch.Generator) -> CountMatrix:
        """New counts X ~ Poisson(theta eta^T) given the latents, same shape (an all-zero draw gets one count)."""
        X = torch.poisson(state.theta @ state.eta.T, generator=generator)
        if not (X > 0).any():
            X[0, 0] = 1.0
        return as_count_matrix(X, dtype=data.dtype, name=data.name)

    def sample(self, N: int, M: int, generator: torch.Generator, *,
               dtype: torch.dtype = torch.float64) -> tuple[dict[str, torch.Tensor], CountMatrix]:
        """Draw latents from the prior and counts from the likelihood (eq. 1).

        Returns:
            ({"theta": (N, K), "eta": (M, K)}, CountMatrix of shape (N, M)).
        """
        K = self.K
        theta = sample_gamma(torch.full((N, K), self.a_theta, dtype=dtype), torch.tensor(self.b_theta, dtype=dtype),
                             generator)
        eta = sample_gamma(torch.full((M, K), self.a_eta, dtype=dtype), torch.tensor(self.b_eta, dtype=dtype),
                           generator)
        X = torch.poisson(theta @ eta.T, generator=generator)
        if not (X > 0).any():  # an all-zero draw is valid but not a data set: put one count in
            X[0, 0] = 1.0
        return {"theta": theta, "eta": eta}, as_count_matrix(X, dtype=dtype, name=f"synthetic {N}x{M}")

    def _prior_tensors(self, like: torch.Tensor):
        def t(v):
            return torch.tensor(v, dtype=like.dtype, device=like.device)
        return t(self.a_theta), t(self.b_theta), t(self.a_eta), t(self.b_eta)

    def model(self, data: CountMatrix) -> None:
        """Pyro model, sparse-exact: the likelihood of all N x M cells from the nonzeros only.

        log p(X | theta, eta) = sum_nonzero log Po(x_nm; r_nm) + sum_zero-cells (-r_nm), and the zero cells'
        total rate is (sum_n theta_n) . (sum_m eta_m) - sum_nonzero r_nm.
        """
        N, M = data.shape
        a_t, b_t, a_e, b_e = self._prior_tensors(data.values)
        theta = pyro.sample("theta", dist.Gamma(a_t, b_t).expand([N, self.K]).to_event(2))
        eta = pyro.sample("eta", dist.Gamma(a_e, b_e).expand([M, self.K]).to_event(2))
        rate_nz = (theta[..., data.rows, :] * eta[..., data.cols, :]).sum(-1)
        with pyro.plate("nonzero", data.nnz):
            pyro.sample("x", dist.Poisson(rate_nz), obs=data.values)
        total_rate = (theta.sum(-2) * eta.sum(-2)).sum(-1)
        pyro.factor("x_zero_cells", -(total_rate - rate_nz.sum(-1)))

    def augmented_model(self, data: CountMatrix) -> None:
        """Pyro model of the augmented joint p(theta, eta, z, X) (eq. 1): z_nmk ~ Po(theta_nk eta_mk) on the
        nonzero cells, x_nm = sum_k z_nmk (a Delta site), zero cells have z = 0 (log-mass -r_nm)."""
        N, M = data.shape
        a_t, b_t, a_e, b_e = self._prior_tensors(data.values)
        theta = pyro.sample("theta", dist.Gamma(a_t, b_t).expand([N, self.K]).to_event(2))
        eta = pyro.sample("eta", dist.Gamma(a_e, b_e).expand([M, self.K]).to_event(2))
        rates = theta[data.rows] * eta[data.cols]
        with pyro.plate("nonzero", data.nnz):
            z = pyro.sample("z", dist.Poisson(rates).to_event(1))
            pyro.sample("x", dist.Delta(z.sum(-1)), obs=data.values)
        pyro.factor("x_zero_cells", -((theta.sum(0) * eta.sum(0)).sum() - rates.sum()))

    def guide_init(self, data: CountMatrix, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Initial guide parameters (the CAVI default initialisation's q(theta), q(eta))."""
        p = self.cavi_init(data, generator).params
        return {"theta_shape": p.theta_shape, "theta_rate": p.theta_rate, "eta_shape": p.eta_shape,
                "eta_rate": p.eta_rate}

    guide_constraints = {"theta_shape": constraints.positive, "theta_rate": constraints.positive,
                         "eta_shape": constraints.positive, "eta_rate": constraints.positive}

    def guide(self, data: CountMatrix, params: dict[str, torch.Tensor] | None = None) -> None:
        """Mean-field Gamma guide q(theta) q(eta), the family CAVI optimises.

        Args:
            params: fixed tensors {"theta_shape", "theta_rate", "eta_shape", "eta_rate"}; when None they are
                Pyro params initialised by :meth:`guide_init` with seed 0.
        """
        if params is None:
            init = self.guide_init(data, torch.Generator(device="cpu").manual_seed(0))
            params = {k: pyro.param(k, v, constraint=self.guide_constraints[k]) for k, v in init.items()}
        pyro.sample("theta", dist.Gamma(params["theta_shape"], params["theta_rate"]).to_event(2))
        pyro.sample("eta", dist.Gamma(params["eta_shape"], params["eta_rate"]).to_event(2))

    # ------------------------------------------------------------------------------------------------
    # Closed forms

    def log_joint(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """log p(theta, eta, X), every constant included. theta (..., N, K), eta (..., M, K) -> (...).

        Batched draws are evaluated together while (draws x nnz x K) stays under _BATCHED_LOG_JOINT_MAX, else one
        at a time so memory stays O(nnz K)."""
        if theta.dim() > 2 and theta[..., 0, 0].numel() * data.nnz * self.K > _BATCHED_LOG_JOINT_MAX:
            batch = theta.shape[:-2]
            flat_t, flat_e = theta.reshape(-1, *theta.shape[-2:]), eta.reshape(-1, *eta.shape[-2:])
            return torch.stack([self.log_joint(data, t, e) for t, e in zip(flat_t, flat_e)]).reshape(batch)
        lp = gamma_log_pdf(theta, self.a_theta, self.b_theta).sum((-2, -1))
        lp = lp + gamma_log_pdf(eta, self.a_eta, self.b_eta).sum((-2, -1))
        rate_nz = (theta.index_select(-2, data.rows) * eta.index_select(-2, data.cols)).sum(-1)
        lik = torch.xlogy(data.values, rate_nz).sum(-1) - data.log_factorial_sum()
        return lp + lik - (theta.sum(-2) * eta.sum(-2)).sum(-1)

    def log_likelihood(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor,
                       scale: float = 1.0) -> torch.Tensor:
        """log p(X | rates = scale * theta eta^T) summed over all N x M cells. theta (N, K), eta (M, K)."""
        rate_nz = scale * (theta[data.rows] * eta[data.cols]).sum(-1)
        return poisson_log_pmf(data.values, rate_nz).sum() - (scale * (theta.sum(0) * eta.sum(0)).sum()
                                                               - rate_nz.sum())

    def z_conditional(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """(..., nnz, K) multinomial probabilities p_nmk ∝ theta_nk eta_mk of z_nm | . (eq. 2)."""
        w = theta.index_select(-2, data.rows) * eta.index_select(-2, data.cols)  # (fast gathers, any leading dims)
        return w / w.sum(-1, keepdim=True)

    def theta_conditional(self, z_theta: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ga(shape, rate) of theta | z, eta (eq. 3). z_theta: (..., N, K) sum_m z_nmk; eta: (..., M, K)."""
        return gamma_posterior(self.a_theta, self.b_theta, z_theta, eta.sum(-2, keepdim=True))

    def eta_conditional(self, z_eta: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ga(shape, rate) of eta | z, theta (eq. 4). z_eta: (..., M, K) sum_n z_nmk; theta: (..., N, K)."""
        return gamma_posterior(self.a_eta, self.b_eta, z_eta, theta.sum(-2, keepdim=True))

    def allocate(self, data: CountMatrix, phi_theta: torch.Tensor, phi_eta: torch.Tensor, *,
                 exact: bool = False) -> Allocation:
        """Expected counts of q(z) with lambda_nmk ∝ exp(phi_theta_nk + phi_eta_mk), in O(nnz K).

        Fast path: with A = exp(phi - rowmax(phi)), S'_nm = A_theta[n] . A_eta[m] (a sampled dense-dense
        product on the nonzero pattern) and sum_m x_nm lambda_nmk = A_theta_nk sum_m (x_nm / S'_nm) A_eta_mk,
        one sparse x dense product. If some S' is too small to invert safely, the exact log-sum-exp path
        (explicit lambda on the nonzeros) is used instead; ``exact=True`` forces it (it is differentiable
        by autograd, which the tests use).
        """
        N, M = data.shape
        if exact:
            return self._allocate_exact(data, phi_theta, phi_eta)
        s = data.csr_structure()
        shift_t = phi_theta.max(-1).values
        shift_e = phi_eta.max(-1).values
        A_t = torch.exp(phi_theta - shift_t[:, None])
        A_e = torch.exp(phi_eta - shift_e[:, None])
        pattern = torch.sparse_csr_tensor(s["crow"], data.cols, torch.ones_like(data.values), (N, M))
        norm = torch.sparse.sampled_addmm(pattern, A_t, A_e.T, beta=0.0).values()
        if bool((norm > _FAST_PATH_MIN_NORM).all()):
            ratio = data.values / norm
            c_theta = A_t * (torch.sparse_csr_tensor(s["crow"], data.cols, ratio, (N, M)) @ A_e)
            c_eta = A_e * (torch.sparse_csr_tensor(s["ccol"], s["rows_t"], ratio[s["perm"]], (M, N)) @ A_t)
            log_norm = torch.log(norm) + shift_t[data.rows] + shift_e[data.cols]
            return Allocation(c_theta, c_eta, (data.values * log_norm).sum())
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

    def elbo(self, data: CountMatrix, params: PoissonMFParams, *, exact: bool = False) -> torch.Tensor:
        """The full augmented-model ELBO (eq. 6) at any variational parameters, every constant included.
        ``exact=True`` uses the autograd-friendly allocation path."""
        E = (*gamma_expectations(params.theta_shape, params.theta_rate),
             *gamma_expectations(params.eta_shape, params.eta_rate))
        return self._elbo_terms(data, params, self.allocate(data, params.phi_theta, params.phi_eta, exact=exact), E)

    # ------------------------------------------------------------------------------------------------
    # CAVI (the loop lives in inference.cavi)

    def cavi_init(self, data: CountMatrix, generator: torch.Generator, init: str = "default") -> CaviState:
        """Initial CAVI state.

        init="reference" (REFERENCE.md section 1): q(theta_nk) = Ga(U(0.5 a, 1.5 a), U(0.5 b, 1.5 b)),
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
        if init not in ("default", "reference"):
            raise ValueError(f"init must be 'default' or 'reference', got {init!r}")
        (N, M), K, dt, dev = data.shape, self.K, data.dtype, data.device

        def U(lo, hi, n):
            return (lo + (hi - lo) * torch.rand(n, K, generator=generator, dtype=torch.float64)).to(dev, dt)

        ts, tr = U(0.5 * self.a_theta, 1.5 * self.a_theta, N), U(0.5 * self.b_theta, 1.5 * self.b_theta, N)
        es, er = U(0.5 * self.a_eta, 1.5 * self.a_eta, M), U(0.5 * self.b_eta, 1.5 * self.b_eta, M)
        if init == "default":
            s = math.sqrt(data.total * K)
            row_total = torch.zeros(N, dtype=dt, device=dev).index_add(0, data.rows, data.values)
            col_total = torch.zeros(M, dtype=dt, device=dev).index_add(0, data.cols, data.values)
            tr = ts / (row_total[:, None] / s + _EMPTY_ROW_MEAN)
            er = es / (col_total[:, None] / s + _EMPTY_ROW_MEAN)
        phi_t, phi_e = gamma_expectations(ts, tr)[1], gamma_expectations(es, er)[1]
        params = PoissonMFParams(ts, tr, es, er, phi_t, phi_e)
        return CaviState(params, self.allocate(data, phi_t, phi_e))

    def cavi_initial_elbo(self, data: CountMatrix, state: CaviState, init: str) -> torch.Tensor:
        """ELBO of the initial state; for init="reference" at a uniform lambda, as the course evaluates it."""
        p = state.params
        if init == "reference":
            p = p._replace(phi_theta=torch.zeros_like(p.phi_theta), phi_eta=torch.zeros_like(p.phi_eta))
        return self.elbo(data, p)

    def cavi_update(self, data: CountMatrix, state: CaviState, *,
                    elbo_at: str = "after_z") -> tuple[CaviState, torch.Tensor]:
        """One CAVI sweep: q(theta) (eq. 3), q(eta) (eq. 4), then q(z) (eq. 5), and the ELBO (eq. 6).

        The theta and eta updates use the current lambda's expected counts; the sweep is the course's
        z -> theta -> eta cycle, read from the theta update.

        Args:
            elbo_at: "after_z" (default): the ELBO after the q(z) update, which costs nothing beyond the
                update's normaliser; "after_eta": the ELBO before it, the point at which the course
                evaluates it (same trajectory, lower bound never above "after_z").

        Returns:
            (new state, ELBO) with ELBO a 0-d tensor.
        """
        p, alloc = state
        E_e = p.eta_shape / p.eta_rate
        ts, tr = self.theta_conditional(alloc.c_theta, E_e)                                  # eq. 3
        E_t, El_t = gamma_expectations(ts, tr)
        es, er = self.eta_conditional(alloc.c_eta, E_t)                                      # eq. 4
        E_e, El_e = gamma_expectations(es, er)
        E = (E_t, El_t, E_e, El_e)
        if elbo_at == "after_eta":
            elbo = self._elbo_terms(data, PoissonMFParams(ts, tr, es, er, p.phi_theta, p.phi_eta), alloc, E)
        new_alloc = self.allocate(data, El_t, El_e)                                          # eq. 5
        new = PoissonMFParams(ts, tr, es, er, El_t, El_e)
        if elbo_at == "after_z":
            elbo = self._elbo_terms(data, new, new_alloc, E)
        elif elbo_at != "after_eta":
            raise ValueError(f"elbo_at must be 'after_z' or 'after_eta', got {elbo_at!r}")
        return CaviState(new, new_alloc), elbo

    def sample_q(self, params: PoissonMFParams, num_samples: int,
                 generator: torch.Generator) -> dict[str, torch.Tensor]:
        """num_samples draws of (theta, eta) from q: {"theta": (S, N, K), "eta": (S, M, K)}."""
        def draw(shape, rate):
            return sample_gamma(shape.expand(num_samples, *shape.shape), rate, generator)
        return {"theta": draw(params.theta_shape, params.theta_rate), "eta": draw(params.eta_shape, params.eta_rate)}

    def posterior_mean(self, params: PoissonMFParams | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Means under q: {"theta": (N, K), "eta": (M, K)} (CAVI params or a guide-parameter dict)."""
        p = params._asdict() if isinstance(params, PoissonMFParams) else params
        return {"theta": p["theta_shape"] / p["theta_rate"], "eta": p["eta_shape"] / p["eta_rate"]}

    guide_mean = posterior_mean

    def log_q(self, params: PoissonMFParams | dict, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(theta, eta) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        p = params._asdict() if isinstance(params, PoissonMFParams) else params
        return sum(gamma_log_pdf(torch.as_tensor(draws[k]), torch.as_tensor(p[f"{k}_shape"]),
                                 torch.as_tensor(p[f"{k}_rate"])).sum((-1, -2))
                   for k in ("theta", "eta"))

    def sample_q_guide(self, params: dict[str, torch.Tensor], num_samples: int,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draws from the guide at fixed parameters (same family as CAVI's q(theta) q(eta))."""
        fill = torch.zeros(1, self.K, dtype=params["theta_shape"].dtype)
        return self.sample_q(PoissonMFParams(*(params[k] for k in PoissonMFParams._fields[:4]), fill, fill),
                             num_samples, generator)

    def elbo_from_guide(self, data: CountMatrix, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Closed-form ELBO (eq. 6) at a guide's q(theta) q(eta), with q(z) at its optimum for them."""
        ts, tr, es, er = (params[k] for k in PoissonMFParams._fields[:4])
        phi_t, phi_e = gamma_expectations(ts, tr)[1], gamma_expectations(es, er)[1]
        return self.elbo(data, PoissonMFParams(ts, tr, es, er, phi_t, phi_e))

    def objective_attrs(self, data: CountMatrix, elbo: float) -> dict[str, float]:
        """The course reports the ELBO divided by the total count ("rescaled ELBO")."""
        return {"elbo": float(elbo), "rescaled_elbo": float(elbo) / data.total}

    invariant_dims = {"rate": ("cell",), "log_joint": ()}

    def coords(self, data: CountMatrix) -> dict[str, np.ndarray]:
        """Labels of the dimensions: rows, cols, factor, and the tracked cells as "row:col" strings."""
        N, M = data.shape
        rows = data.row_labels if data.row_labels is not None else np.arange(N)
        cols = data.col_labels if data.col_labels is not None else np.arange(M)
        r, c = self.invariant_cells(data)
        cells = np.array([f"{rows[i]}:{cols[j]}" for i, j in zip(r.tolist(), c.tolist())])
        return {"row": np.asarray(rows), "col": np.asarray(cols), "factor": np.arange(self.K), "cell": cells}

    # ------------------------------------------------------------------------------------------------
    # Gibbs (the loop lives in inference.gibbs)

    # Chains can run as one batch: a state with a leading chain dimension (C, N, K), (C, M, K) is swept at once.
    gibbs_batched_chains = True

    def gibbs_init(self, data: CountMatrix, generator: torch.Generator, num_chains: int | None = None) -> GibbsState:
        """Start a chain (or ``num_chains`` chains, stacked on a leading dimension) at a draw of the prior."""
        N, M = data.shape
        lead = () if num_chains is None else (num_chains,)

        def draw(n, a, b):
            return sample_gamma(torch.full(lead + (n, self.K), a, dtype=torch.float64),
                                torch.tensor(b, dtype=torch.float64), generator).to(data.device, data.dtype)
        return GibbsState(draw(N, self.a_theta, self.b_theta), draw(M, self.a_eta, self.b_eta))

    def gibbs_sweep(self, data: CountMatrix, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """One systematic-scan sweep: z | theta, eta (eq. 2); theta | z, eta (eq. 3); eta | z, theta (eq. 4).
        theta (..., N, K), eta (..., M, K): leading dimensions are independent chains."""
        theta, eta = state
        z = sample_multinomial(data.values, self.z_conditional(data, theta, eta), generator)     # eq. 2
        z_theta = torch.zeros_like(theta).index_add_(-2, data.rows, z)
        z_eta = torch.zeros_like(eta).index_add_(-2, data.cols, z)
        theta = sample_gamma(*self.theta_conditional(z_theta, eta), generator)                  # eq. 3
        eta = sample_gamma(*self.eta_conditional(z_eta, theta), generator)                      # eq. 4
        return GibbsState(theta, eta)

    # ------------------------------------------------------------------------------------------------
    # EM for the posterior mode (the loop lives in inference.em)

    def em_init(self, data: CountMatrix, generator: torch.Generator) -> GibbsState:
        """Start at the mean of CAVI's data-informed initial q (random shapes, rates at the independence fit).
        The mode of a Ga(a, b) prior is at 0 and its density unbounded there when a < 1: no MAP exists then."""
        if self.a_theta < 1 or self.a_eta < 1:
            raise ValueError(f"EM finds the posterior mode, which does not exist when a_theta or a_eta < 1 (the Gamma "
                             f"density is unbounded at 0); got a_theta={self.a_theta}, a_eta={self.a_eta}: use CAVI or Gibbs")
        p = self.posterior_mean(self.cavi_init(data, generator).params)
        return GibbsState(p["theta"], p["eta"])

    def em_update(self, data: CountMatrix, state: GibbsState) -> GibbsState:
        """E-step E[z_nmk] = x_nm theta_nk eta_mk / sum_l theta_nl eta_ml (eq. 2), M-step theta = the mode of
        eq. 3 with z replaced by its expectation, (a_theta - 1 + sum_m E[z_nmk]) / (b_theta + sum_m eta_mk); then
        a fresh E-step and the mode of eq. 4 for eta. Each half is an EM step for one block (the Lee-Seung
        multiplicative update of KL-NMF with Gamma priors), so log p(theta, eta, X) never decreases. O(nnz K)."""
        theta, eta = state
        tiny = torch.finfo(theta.dtype).tiny  # a theta of exactly 0 (a = 1, no counts) gets lambda 0, not NaN
        c_theta = self.allocate(data, torch.log(theta.clamp_min(tiny)), torch.log(eta.clamp_min(tiny))).c_theta
        theta = (self.a_theta - 1 + c_theta) / (self.b_theta + eta.sum(0))                          # eq. 3 mode
        c_eta = self.allocate(data, torch.log(theta.clamp_min(tiny)), torch.log(eta.clamp_min(tiny))).c_eta
        eta = (self.a_eta - 1 + c_eta) / (self.b_eta + theta.sum(0))                                # eq. 4 mode
        return GibbsState(theta, eta)

    # ------------------------------------------------------------------------------------------------
    # Quantities that survive non-identifiability (rotation/permutation of the factors)

    def invariant_cells(self, data: CountMatrix, max_cells: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells (rows, cols) whose rates are tracked across methods: all N x M cells when there are at most
        ``max_cells``, else half nonzero and half uniformly drawn cells, fixed by seed 0."""
        N, M = data.shape
        if N * M <= max_cells:
            r, c = torch.meshgrid(torch.arange(N), torch.arange(M), indexing="ij")
            return r.reshape(-1).to(data.device), c.reshape(-1).to(data.device)
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(data.nnz, generator=g)[: max_cells // 2].to(data.device)
        flat = torch.randperm(N * M, generator=g)[: max_cells - pick.numel()].to(data.device)
        return torch.cat([data.rows[pick], flat // M]), torch.cat([data.cols[pick], flat % M])

    def invariants(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Identifiable quantities of draws theta (..., N, K), eta (..., M, K): "rate" (..., C) at
        :meth:`invariant_cells` and "log_joint" (...)."""
        r, c = self.invariant_cells(data)
        return {"rate": (theta[..., r, :] * eta[..., c, :]).sum(-1), "log_joint": self.log_joint(data, theta, eta)}

    def pointwise_log_lik(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor, **_) -> dict[str, torch.Tensor]:
        """log Poisson(x_nm | theta_n . eta_m) for every cell (zeros included), row-major: {"x": (..., N M)}."""
        X = torch.zeros(data.shape, dtype=theta.dtype)
        X[data.rows, data.cols] = data.values.to(theta.dtype)
        rates = torch.as_tensor(theta) @ torch.as_tensor(eta).transpose(-1, -2)
        return {"x": poisson_log_pmf(X, rates).reshape(rates.shape[:-2] + (-1,))}

    def predicted_rates(self, theta: torch.Tensor, eta: torch.Tensor, rows: torch.Tensor,
                        cols: torch.Tensor) -> torch.Tensor:
        """Rates theta_n . eta_m at the given cells. theta (..., N, K), eta (..., M, K) -> (..., C)."""
        return (theta[..., rows, :] * eta[..., cols, :]).sum(-1)

    # ------------------------------------------------------------------------------------------------
    # Held-out evaluation (used by inference.compare)

    def split(self, data: CountMatrix, test_fraction: float, generator: torch.Generator
              ) -> tuple[CountMatrix, CountMatrix]:
        """Held-out split by binomial thinning (see CountMatrix.thin): every cell is held out in part."""
        return data.thin(test_fraction, generator)

    def heldout_score(self, result: Any, test: CountMatrix, test_fraction: float) -> dict[str, float]:
        """Held-out Poisson log-likelihood per test count at the posterior mean rates.

        A model fitted on the thinned training part predicts the test part with rates
        f / (1 - f) * E[theta_n . eta_m] over all N x M cells (zeros included).
        """
        scale = test_fraction / (1.0 - test_fraction)
        rate_nz = scale * expected_rates(result, test.rows, test.cols)
        total = scale * expected_total_rate(result)
        ll = poisson_log_pmf(test.values, rate_nz).sum() - (total - rate_nz.sum())
        return {"heldout_loglik_per_count": float(ll) / test.total}


# Product functions live in models.poisson_mf_products; re-exported here for convenience.
from models.poisson_mf_products import (expected_rates, expected_total_rate, factor_top_items,  # noqa: E402
                                        recommend)
