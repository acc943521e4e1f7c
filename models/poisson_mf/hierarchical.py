"""Hierarchical Poisson factorisation (HPF; Gopalan, Hofman and Blei 2015): Poisson MF whose Gamma rate priors have
a per-row "activity" and a per-column "popularity", so that heavy and light users (and popular and niche items)
each get factors on their own scale.

Notation (Gamma in the shape-rate form; N rows, M columns, K factors):
    xi_n ~ Ga(c_theta, d_theta),     theta_nk | xi_n ~ Ga(a_theta, xi_n)                                (eq. H1)
    delta_m ~ Ga(c_eta, d_eta),      eta_mk | delta_m ~ Ga(a_eta, delta_m)
    x_nm ~ Po(sum_k theta_nk eta_mk);  augmented: x_nm = sum_k z_nmk, z_nmk ~ Po(theta_nk eta_mk)

Complete conditionals (Gibbs; CAVI replaces every other variable by its expectation under q):
    z_nm | .     ~ Mult(x_nm, p_nm),  p_nmk ∝ theta_nk eta_mk                                          (eq. H2)
    theta_nk | . ~ Ga(a_theta + sum_m z_nmk, xi_n + sum_m eta_mk)                                       (eq. H3)
    xi_n | .     ~ Ga(c_theta + K a_theta, d_theta + sum_k theta_nk)                                    (eq. H4)
    eta_mk | .   ~ Ga(a_eta + sum_n z_nmk, delta_m + sum_n theta_nk)                                    (eq. H5)
    delta_m | .  ~ Ga(c_eta + K a_eta, d_eta + sum_k eta_mk)                                            (eq. H6)
Mean field q(z) q(theta) q(xi) q(eta) q(delta): q(z_nm) = Mult(x_nm, lambda_nm), lambda_nmk ∝ exp(E[log theta_nk]
+ E[log eta_mk]) (as models/poisson_mf/vb.py, eq. 5, whose O(nnz K) allocation this model shares); the Gamma
factors take eqs. H3-H6 with E[.] in place of each variable.
ELBO (every constant included; E[log Ga(t; a, r)] with r random is a E[log r] - lgamma(a) + (a - 1) E[log t]
- E[r] E[t]; H the Gamma entropy, a_q - log b_q + lgamma(a_q) + (1 - a_q) digamma(a_q)):
    sum_nm sum_k E[z_nmk](E[log theta_nk] + E[log eta_mk] - log lambda_nmk) - sum_k (sum_n E theta_nk)(sum_m E eta_mk)
    - sum_nm log x_nm! + sum_nk E[log Ga(theta_nk; a_theta, xi_n)] + sum_n E[log Ga(xi_n; c_theta, d_theta)]
    + (the same for eta, delta) + H[q(theta)] + H[q(xi)] + H[q(eta)] + H[q(delta)]                      (eq. H7)
Gopalan et al.'s settings: a = c = 0.3 with c / d = 1 (the prior mean of xi, delta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from models.conjugate import (digamma_lgamma, gamma_expectations, gamma_log_pdf, multinomial_log_pmf, sample_gamma,
                              sample_multinomial)
from models.data import CountMatrix, as_count_matrix
from models.poisson_mf.model import PoissonMF, _positive_finite, augmented_likelihood, sparse_likelihood
from models.poisson_mf.vb import Allocation, PoissonMFVB, sampled_products
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["HierarchicalPoissonMF", "HPFState", "HPFParams", "HPFCaviState"]

_EMPTY_ROW_MEAN = 1e-3  # as in vb.py: the initial E[theta] of an empty row stays positive


class HPFState(NamedTuple):
    """Gibbs state: theta (N, K), xi (N,), eta (M, K), delta (M,); leading dimensions are chains."""

    theta: torch.Tensor
    xi: torch.Tensor
    eta: torch.Tensor
    delta: torch.Tensor


def _gamma_entropy(shape: torch.Tensor, rate: torch.Tensor, digamma_shape: torch.Tensor,
                   lgamma_shape: torch.Tensor) -> torch.Tensor:
    """Elementwise entropy of Ga(shape, rate): a - log b + lgamma(a) + (1 - a) digamma(a)."""
    return shape - torch.log(rate) + lgamma_shape + (1 - shape) * digamma_shape


class HPFParams(NamedTuple):
    """q's parameters: q(theta_nk) = Ga(theta_shape, theta_rate) (N, K), q(xi_n) = Ga(xi_shape, xi_rate) (N,), the
    same for eta (M, K) and delta (M,), and the log-potentials of q(z), phi_theta (N, K), phi_eta (M, K)."""

    theta_shape: torch.Tensor
    theta_rate: torch.Tensor
    xi_shape: torch.Tensor
    xi_rate: torch.Tensor
    eta_shape: torch.Tensor
    eta_rate: torch.Tensor
    delta_shape: torch.Tensor
    delta_rate: torch.Tensor
    phi_theta: torch.Tensor
    phi_eta: torch.Tensor

    _SITES = ("theta", "xi", "eta", "delta")

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draws {"theta": (S, N, K), "xi": (S, N), "eta": (S, M, K), "delta": (S, M)}."""
        out = {}
        for s in self._SITES:
            shape, rate = getattr(self, f"{s}_shape"), getattr(self, f"{s}_rate")
            out[s] = sample_gamma(shape.expand(num_samples, *shape.shape), rate, generator)
        return out

    def mean(self) -> dict[str, torch.Tensor]:
        return {s: getattr(self, f"{s}_shape") / getattr(self, f"{s}_rate") for s in self._SITES}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q of draws (S, ...) -> (S,)."""
        total = 0.0
        for s in self._SITES:
            lp = gamma_log_pdf(torch.as_tensor(draws[s]), getattr(self, f"{s}_shape"), getattr(self, f"{s}_rate"))
            total = total + lp.reshape(lp.shape[0], -1).sum(-1)
        return total

    def to_guide(self) -> dict[str, torch.Tensor]:
        return {f"{s}_{p}": getattr(self, f"{s}_{p}") for s in self._SITES for p in ("shape", "rate")}

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> HPFParams:
        """q from the guide's Gamma parameters, q(z) at its optimum for them (phi = E[log theta], E[log eta])."""
        p = {k: torch.as_tensor(v) for k, v in params.items()}
        return cls(**p, phi_theta=gamma_expectations(p["theta_shape"], p["theta_rate"])[1],
                   phi_eta=gamma_expectations(p["eta_shape"], p["eta_rate"])[1])

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> HPFParams:
        return cls(**{k: torch.as_tensor(params[k]) for k in cls._fields})


class HPFCaviState(NamedTuple):
    """CAVI state: q and the allocation of the counts that its q(z) implies."""

    params: HPFParams
    alloc: Allocation


@dataclass(frozen=True)
class HierarchicalPoissonMF:
    """Hierarchical Poisson factorisation (eq. H1). K factors; a_theta, a_eta the factors' Gamma shapes; the row
    activity xi_n ~ Ga(c_theta, d_theta) and the column popularity delta_m ~ Ga(c_eta, d_eta) are the rates of the
    factors' priors. Defaults: Gopalan, Hofman and Blei (2015), a = c = 0.3, d = 0.3 (E[xi] = 1)."""

    K: int
    a_theta: float = 0.3
    c_theta: float = 0.3
    d_theta: float = 0.3
    a_eta: float = 0.3
    c_eta: float = 0.3
    d_eta: float = 0.3

    name = "hpf"
    sites = ("theta", "xi", "eta", "delta")
    max_plate_nesting = 1
    dims = {"theta": ("row", "factor"), "xi": ("row",), "eta": ("col", "factor"), "delta": ("col",)}
    family = HPFParams
    cavi_blocks = ("theta", "xi", "eta", "delta", "z")
    cavi_options = {}  # (no options; a class attribute, not a dataclass field)
    svi_elbo = "meanfield"
    gibbs_batched_chains = True

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        for f in ("a_theta", "c_theta", "d_theta", "a_eta", "c_eta", "d_eta"):
            object.__setattr__(self, f, _positive_finite(f, getattr(self, f)))

    def hyperparameters(self) -> dict[str, float]:
        return {"K": self.K, "a_theta": self.a_theta, "c_theta": self.c_theta, "d_theta": self.d_theta,
                "a_eta": self.a_eta, "c_eta": self.c_eta, "d_eta": self.d_eta}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> CountMatrix:
        return as_count_matrix(data, dtype=dtype, device=device)

    # What depends on the rates theta_n . eta_m only is Poisson MF's: the tracked cells and their labels, held-out
    # splits and scores, predicted rates, the pointwise log-likelihood, and the O(nnz K) allocation of the counts.
    invariant_cells = PoissonMF.invariant_cells
    coords = PoissonMF.coords
    split = PoissonMF.split
    heldout_score = PoissonMF.heldout_score
    predicted_rates = PoissonMF.predicted_rates
    z_conditional = PoissonMF.z_conditional
    allocate = PoissonMFVB.allocate
    _allocate_shifted = PoissonMFVB._allocate_shifted
    _allocate_exact = staticmethod(PoissonMFVB._allocate_exact)
    invariant_dims = {"rate": ("cell",), "log_joint": ()}

    def pointwise_log_lik(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor, **_) -> dict:
        return PoissonMF.pointwise_log_lik(self, data, theta, eta)

    pointwise_size = PoissonMF.pointwise_size

    # ------------------------------------------------------------------------------------------------
    # Generative model

    def _priors(self, xi: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """log p(xi) + log p(delta) (...,)."""
        return (gamma_log_pdf(xi, self.c_theta, self.d_theta).sum(-1)
                + gamma_log_pdf(delta, self.c_eta, self.d_eta).sum(-1))

    def simulate(self, size: tuple[int, int], generator: torch.Generator) -> tuple[HPFState, CountMatrix]:
        """A prior draw (eq. H1) and counts of shape ``size`` (an all-zero draw gets one count)."""
        N, M = size
        dt = torch.float64
        xi = sample_gamma(torch.full((N,), self.c_theta, dtype=dt), torch.tensor(self.d_theta, dtype=dt), generator)
        delta = sample_gamma(torch.full((M,), self.c_eta, dtype=dt), torch.tensor(self.d_eta, dtype=dt), generator)
        theta = sample_gamma(torch.full((N, self.K), self.a_theta, dtype=dt), xi[:, None], generator)
        eta = sample_gamma(torch.full((M, self.K), self.a_eta, dtype=dt), delta[:, None], generator)
        X = torch.poisson(theta @ eta.T, generator=generator)
        if not (X > 0).any():  # an all-zero draw is valid but not a data set: put one count in
            X[0, 0] = 1.0
        return HPFState(theta, xi, eta, delta), as_count_matrix(X, name=f"synthetic {N}x{M}")

    def resimulate(self, state: HPFState, data: CountMatrix, generator: torch.Generator) -> CountMatrix:
        """New counts X ~ Po(theta eta^T) given the latents, the shape of ``data``."""
        X = torch.poisson(state.theta @ state.eta.T, generator=generator)
        if not (X > 0).any():
            X[0, 0] = 1.0
        return as_count_matrix(X, dtype=data.dtype, name=data.name)

    def _t(self, v: float, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(v, dtype=like.dtype, device=like.device)

    def _pyro_latents(self, data: CountMatrix):
        import pyro
        import pyro.distributions as dist

        N, M = data.shape
        t = data.values
        xi = pyro.sample("xi", dist.Gamma(self._t(self.c_theta, t), self._t(self.d_theta, t)).expand([N]).to_event(1))
        delta = pyro.sample("delta", dist.Gamma(self._t(self.c_eta, t), self._t(self.d_eta, t)).expand([M]).to_event(1))
        theta = pyro.sample("theta", dist.Gamma(self._t(self.a_theta, t), xi[..., :, None].expand(
            *xi.shape, self.K)).to_event(2))
        eta = pyro.sample("eta", dist.Gamma(self._t(self.a_eta, t), delta[..., :, None].expand(
            *delta.shape, self.K)).to_event(2))
        return theta, eta

    def model(self, data: CountMatrix) -> None:
        """Pyro model (eq. H1), sparse-exact as PoissonMF.model: the zero cells enter through their total rate."""
        sparse_likelihood(data, *self._pyro_latents(data))

    def augmented_model(self, data: CountMatrix) -> None:
        """Pyro model of the augmented joint (z on the nonzero cells, x = sum_k z a Delta site)."""
        augmented_likelihood(data, *self._pyro_latents(data))

    conditional_model = augmented_model

    # ------------------------------------------------------------------------------------------------
    # Closed forms

    def log_joint(self, data: CountMatrix, theta: torch.Tensor, xi: torch.Tensor, eta: torch.Tensor,
                  delta: torch.Tensor) -> torch.Tensor:
        """log p(theta, xi, eta, delta, X), every constant included; leading dimensions are draws -> (...)."""
        if theta.dim() > 2:
            batch = theta.shape[:-2]
            parts = [t.reshape(-1, *t.shape[len(batch):]) for t in (theta, xi, eta, delta)]
            return torch.stack([self.log_joint(data, *p) for p in zip(*parts)]).reshape(batch)
        lp = (gamma_log_pdf(theta, self.a_theta, xi[:, None]).sum()
              + gamma_log_pdf(eta, self.a_eta, delta[:, None]).sum() + self._priors(xi, delta))
        if theta.requires_grad or eta.requires_grad:
            rate_nz = (theta[data.rows] * eta[data.cols]).sum(-1)
        else:
            rate_nz = sampled_products(data, theta, eta)
        lik = torch.xlogy(data.values, rate_nz).sum() - data.log_factorial_sum()
        return lp + lik - (theta.sum(0) * eta.sum(0)).sum()

    def invariants(self, data: CountMatrix, theta: torch.Tensor, xi: torch.Tensor, eta: torch.Tensor,
                   delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """"rate" (..., C) at the tracked cells and "log_joint" (...)."""
        r, c = self.invariant_cells(data)
        return {"rate": (theta[..., r, :] * eta[..., c, :]).sum(-1),
                "log_joint": self.log_joint(data, theta, xi, eta, delta)}

    def theta_conditional(self, z_theta: torch.Tensor, xi: torch.Tensor, eta: torch.Tensor):
        """Ga(shape, rate) of theta | . (eq. H3): z_theta (..., N, K), xi (..., N), eta (..., M, K)."""
        return self.a_theta + z_theta, xi[..., :, None] + eta.sum(-2, keepdim=True)

    def xi_conditional(self, theta: torch.Tensor):
        """Ga(shape, rate) of xi | theta (eq. H4): theta (..., N, K) -> (..., N) each."""
        rate = self.d_theta + theta.sum(-1)
        return torch.full_like(rate, self.c_theta + self.K * self.a_theta), rate

    def eta_conditional(self, z_eta: torch.Tensor, delta: torch.Tensor, theta: torch.Tensor):
        """Ga(shape, rate) of eta | . (eq. H5)."""
        return self.a_eta + z_eta, delta[..., :, None] + theta.sum(-2, keepdim=True)

    def delta_conditional(self, eta: torch.Tensor):
        """Ga(shape, rate) of delta | eta (eq. H6)."""
        rate = self.d_eta + eta.sum(-1)
        return torch.full_like(rate, self.c_eta + self.K * self.a_eta), rate

    def conditional_values(self, data: CountMatrix, generator: torch.Generator) -> dict[str, torch.Tensor]:
        state = warm_gibbs_state(self, data, generator)
        z = sample_multinomial(data.values, self.z_conditional(data, state.theta, state.eta), generator)
        return {**state._asdict(), "z": z}

    def complete_conditionals(self, data: CountMatrix, values: dict[str, torch.Tensor]) -> dict[str, Conditional]:
        """Eqs. H2-H6 at ``values`` as conditionals of the augmented model."""
        theta, xi, eta, delta, z = (values[k] for k in ("theta", "xi", "eta", "delta", "z"))
        p = self.z_conditional(data, theta, eta)
        z_theta = torch.zeros_like(theta).index_add(0, data.rows, z)
        z_eta = torch.zeros_like(eta).index_add(0, data.cols, z)
        G = torch.distributions.Gamma
        return {"z": Conditional(("z",), lambda g: {"z": sample_multinomial(data.values, p, g)},
                                 lambda v: multinomial_log_pmf(v["z"], data.values, p).sum()),
                "theta": Conditional.of("theta", G(*self.theta_conditional(z_theta, xi, eta))),
                "xi": Conditional.of("xi", G(*self.xi_conditional(theta))),
                "eta": Conditional.of("eta", G(*self.eta_conditional(z_eta, delta, theta))),
                "delta": Conditional.of("delta", G(*self.delta_conditional(eta)))}

    # ------------------------------------------------------------------------------------------------
    # Gibbs

    def gibbs_init(self, data: CountMatrix, generator: torch.Generator, num_chains: int | None = None) -> HPFState:
        """A prior draw per chain (stacked on a leading dimension when ``num_chains`` is given)."""
        N, M = data.shape
        lead = () if num_chains is None else (num_chains,)
        dt = torch.float64

        def g(shape, a, rate):
            return sample_gamma(torch.full(shape, a, dtype=dt), rate, generator)
        xi = g(lead + (N,), self.c_theta, torch.tensor(self.d_theta, dtype=dt))
        delta = g(lead + (M,), self.c_eta, torch.tensor(self.d_eta, dtype=dt))
        theta = g(lead + (N, self.K), self.a_theta, xi[..., None])
        eta = g(lead + (M, self.K), self.a_eta, delta[..., None])
        return HPFState(*(t.to(data.device, data.dtype) for t in (theta, xi, eta, delta)))

    def gibbs_sweep(self, data: CountMatrix, state: HPFState, generator: torch.Generator) -> HPFState:
        """z (eq. H2), theta (H3), xi (H4), eta (H5), delta (H6) in turn; leading dimensions are chains."""
        theta, xi, eta, delta = state
        z = sample_multinomial(data.values, self.z_conditional(data, theta, eta), generator)      # eq. H2
        z_theta = torch.zeros_like(theta).index_add_(-2, data.rows, z)
        z_eta = torch.zeros_like(eta).index_add_(-2, data.cols, z)
        theta = sample_gamma(*self.theta_conditional(z_theta, xi, eta), generator)               # eq. H3
        xi = sample_gamma(*self.xi_conditional(theta), generator)                                # eq. H4
        eta = sample_gamma(*self.eta_conditional(z_eta, delta, theta), generator)                # eq. H5
        delta = sample_gamma(*self.delta_conditional(eta), generator)                            # eq. H6
        return HPFState(theta, xi, eta, delta)

    # ------------------------------------------------------------------------------------------------
    # EM for the posterior mode (the loop lives in inference.em)

    def em_init(self, data: CountMatrix, generator: torch.Generator) -> HPFState:
        """Start at the means of CAVI's initial q. A Ga(a, r) density is unbounded at 0 when a < 1 (and so is the
        joint at theta = 0): no mode exists then."""
        if self.a_theta < 1 or self.a_eta < 1:
            raise ValueError(f"EM finds the posterior mode, which does not exist when a_theta or a_eta < 1 (the Gamma "
                             f"density is unbounded at 0); got a_theta={self.a_theta}, a_eta={self.a_eta}: use CAVI or "
                             f"Gibbs")
        m = self.cavi_init(data, generator).params.mean()
        return HPFState(m["theta"], m["xi"], m["eta"], m["delta"])

    def em_update(self, data: CountMatrix, state: HPFState) -> HPFState:
        """Block-wise EM on log p(theta, xi, eta, delta, X): E-step E[z_nmk] (eq. H2), then the modes of eqs. H3 and
        H4 (xi at the new theta), a fresh E-step, and the modes of eqs. H5 and H6. The mode of Ga(s, r) is
        (s - 1) / r; each half-step raises the log joint."""
        theta, xi, eta, delta = state
        tiny = torch.finfo(theta.dtype).tiny
        c_theta = self.allocate(data, torch.log(theta.clamp_min(tiny)), torch.log(eta.clamp_min(tiny))).c_theta
        shape, rate = self.theta_conditional(c_theta, xi, eta)
        theta = (shape - 1) / rate                                                             # eq. H3 mode
        shape, rate = self.xi_conditional(theta)
        xi = (shape - 1) / rate                                                                # eq. H4 mode
        c_eta = self.allocate(data, torch.log(theta.clamp_min(tiny)), torch.log(eta.clamp_min(tiny))).c_eta
        shape, rate = self.eta_conditional(c_eta, delta, theta)
        eta = (shape - 1) / rate                                                               # eq. H5 mode
        shape, rate = self.delta_conditional(eta)
        delta = (shape - 1) / rate                                                             # eq. H6 mode
        return HPFState(theta, xi, eta, delta)

    # ------------------------------------------------------------------------------------------------
    # CAVI

    def cavi_init(self, data: CountMatrix, generator: torch.Generator, **_) -> HPFCaviState:
        """Random shapes U(0.5 a, 1.5 a) with rates putting E[theta_nk] at r_n / s and E[eta_mk] at c_m / s (r, c the
        row and column totals, s = sqrt(sum(X) K): the independence fit split over the factors, as PoissonMF's
        default start); q(xi), q(delta) from eqs. H4, H6 at those means; q(z) at its optimum."""
        (N, M), K, dt, dev = data.shape, self.K, data.dtype, data.device
        row_total = torch.zeros(N, dtype=dt, device=dev).index_add(0, data.rows, data.values)
        col_total = torch.zeros(M, dtype=dt, device=dev).index_add(0, data.cols, data.values)

        def U(lo, hi, n):
            return (lo + (hi - lo) * torch.rand(n, K, generator=generator, dtype=torch.float64)).to(dev, dt)

        s = math.sqrt(float(row_total.sum()) * K)
        ts = U(0.5 * self.a_theta, 1.5 * self.a_theta, N)
        es = U(0.5 * self.a_eta, 1.5 * self.a_eta, M)
        tr = ts / (row_total[:, None] / s + _EMPTY_ROW_MEAN)
        er = es / (col_total[:, None] / s + _EMPTY_ROW_MEAN)
        xs, xr = self.xi_conditional(ts / tr)
        ds, dr = self.delta_conditional(es / er)
        phi_t, phi_e = gamma_expectations(ts, tr)[1], gamma_expectations(es, er)[1]
        q = HPFParams(ts, tr, xs, xr, es, er, ds, dr, phi_t, phi_e)
        return HPFCaviState(q, self.allocate(data, phi_t, phi_e))

    def _elbo_terms(self, data: CountMatrix, q: HPFParams, alloc: Allocation) -> torch.Tensor:
        """eq. H7 from q and the allocation of q(z) (whose lambda is exp(phi) normalised)."""
        dg, lg = {}, {}
        for s in HPFParams._SITES:
            dg[s], lg[s] = digamma_lgamma(getattr(q, f"{s}_shape"))
        E = {s: getattr(q, f"{s}_shape") / getattr(q, f"{s}_rate") for s in HPFParams._SITES}
        El = {s: dg[s] - torch.log(getattr(q, f"{s}_rate")) for s in HPFParams._SITES}
        z_term = ((alloc.c_theta * (El["theta"] - q.phi_theta)).sum() + (alloc.c_eta * (El["eta"] - q.phi_eta)).sum()
                  + alloc.x_log_norm)
        lik = z_term - (E["theta"].sum(0) * E["eta"].sum(0)).sum() - data.log_factorial_sum()
        prior = 0.0
        for f, r, a, c, d in (("theta", "xi", self.a_theta, self.c_theta, self.d_theta),
                              ("eta", "delta", self.a_eta, self.c_eta, self.d_eta)):
            prior = prior + (a * El[r][:, None] - math.lgamma(a) + (a - 1) * El[f] - E[r][:, None] * E[f]).sum()
            prior = prior + (c * math.log(d) - math.lgamma(c) + (c - 1) * El[r] - d * E[r]).sum()
        entropy = sum(_gamma_entropy(getattr(q, f"{s}_shape"), getattr(q, f"{s}_rate"), dg[s], lg[s]).sum()
                      for s in HPFParams._SITES)
        return lik + prior + entropy

    def elbo(self, data: CountMatrix, q: HPFParams, *, exact: bool = False) -> torch.Tensor:
        """The ELBO (eq. H7) at q, its q(z) given by phi; differentiable (the exact allocation under autograd)."""
        return self._elbo_terms(data, q, self.allocate(data, q.phi_theta, q.phi_eta, exact=exact))

    def cavi_state_elbo(self, data: CountMatrix, state: HPFCaviState) -> torch.Tensor:
        return self.elbo(data, state.params)

    def cavi_initial_elbo(self, data: CountMatrix, state: HPFCaviState, **_) -> torch.Tensor:
        return self.elbo(data, state.params)

    def local_q(self, data: CountMatrix, q: HPFParams) -> Conditional:
        """q(z_nm) = Mult(x_nm, lambda_nm) on the nonzero cells, for Monte Carlo checks of the ELBO."""
        lam = torch.softmax(q.phi_theta[data.rows] + q.phi_eta[data.cols], -1)
        return Conditional(("z",), lambda g: {"z": sample_multinomial(data.values, lam, g)},
                           lambda v: multinomial_log_pmf(v["z"], data.values, lam).sum())

    def cavi_block(self, data: CountMatrix, state: HPFCaviState, block: str) -> HPFCaviState:
        """One block: "theta" (eq. H3 under q), "xi" (H4), "eta" (H5), "delta" (H6), "z" (lambda at E[log theta]
        + E[log eta])."""
        q, alloc = state
        E = q.mean()
        if block == "theta":
            ts, tr = self.theta_conditional(alloc.c_theta, E["xi"], E["eta"])
            return HPFCaviState(q._replace(theta_shape=ts, theta_rate=tr), alloc)
        if block == "xi":
            xs, xr = self.xi_conditional(E["theta"])
            return HPFCaviState(q._replace(xi_shape=xs, xi_rate=xr), alloc)
        if block == "eta":
            es, er = self.eta_conditional(alloc.c_eta, E["delta"], E["theta"])
            return HPFCaviState(q._replace(eta_shape=es, eta_rate=er), alloc)
        if block == "delta":
            ds, dr = self.delta_conditional(E["eta"])
            return HPFCaviState(q._replace(delta_shape=ds, delta_rate=dr), alloc)
        if block == "z":
            El_t = gamma_expectations(q.theta_shape, q.theta_rate)[1]
            El_e = gamma_expectations(q.eta_shape, q.eta_rate)[1]
            return HPFCaviState(q._replace(phi_theta=El_t, phi_eta=El_e), self.allocate(data, El_t, El_e))
        raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")

    def cavi_update(self, data: CountMatrix, state: HPFCaviState, **_) -> tuple[HPFCaviState, torch.Tensor]:
        """One sweep: the blocks theta, xi, eta, delta, z in turn (eqs. H3-H6, then q(z)), and the ELBO (eq. H7)
        after the q(z) update."""
        for block in self.cavi_blocks:
            state = self.cavi_block(data, state, block)
        return state, self._elbo_terms(data, *state)

    def objective_attrs(self, data: CountMatrix, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo), "rescaled_elbo": float(elbo) / data.total}

    # ------------------------------------------------------------------------------------------------
    # SVI: the Pyro guide of the same family

    @property
    def guide_constraints(self) -> dict[str, Any]:
        from torch.distributions import constraints

        return {f"{s}_{p}": constraints.positive for s in HPFParams._SITES for p in ("shape", "rate")}

    def guide_init(self, data: CountMatrix, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.cavi_init(data, generator).params.to_guide()

    def guide(self, data: CountMatrix, params: dict[str, torch.Tensor]) -> None:
        """Mean-field Gamma guide q(theta) q(xi) q(eta) q(delta) (q(z) is summed out by the Pyro model)."""
        import pyro
        import pyro.distributions as dist

        for s, event in (("xi", 1), ("delta", 1), ("theta", 2), ("eta", 2)):
            pyro.sample(s, dist.Gamma(params[f"{s}_shape"], params[f"{s}_rate"]).to_event(event))
