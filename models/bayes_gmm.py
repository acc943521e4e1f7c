"""Bayesian spherical Gaussian mixture with conjugate Dirichlet / Normal-Gamma priors; missing entries allowed.

Notation:
    n rows, d coordinates, K components; o_ui = [x_ui observed].
    pi ~ Dir(alpha0 1_K)
    tau_j ~ Ga(a0, b0)                         precision of component j, shared by its d coordinates
    mu_ji | tau_j ~ N(m0, 1 / (beta0 tau_j))
    z_u ~ Cat(pi),  x_ui | z_u = j ~ N(mu_ji, 1 / tau_j)   for observed (u, i)                       (eq. 1)

Sufficient statistics of component j under weights w_uj (hard assignments for Gibbs, responsibilities
r_uj for CAVI): N_ji = sum_u w_uj o_ui, S_ji = sum_u w_uj o_ui x_ui, Q_ji = sum_u w_uj o_ui x_ui^2, n_j = sum_u w_uj.
Normal-Gamma update (the one conjugate update shared by Gibbs and CAVI):
    beta_ji = beta0 + N_ji,  m_ji = (beta0 m0 + S_ji) / beta_ji,
    a_j = a0 + sum_i N_ji / 2,  b_j = b0 + sum_i (Q_ji + beta0 m0^2 - beta_ji m_ji^2) / 2                  (eq. 2)
    alpha_j = alpha0 + n_j                                                                                 (eq. 3)
CAVI responsibilities (Bishop 2006, sec. 10.2, with a spherical precision and masked coordinates):
    log rho_uj = E[log pi_j] + sum_i o_ui (E[log tau_j] / 2 - log(2 pi) / 2
                 - (E[tau_j] (x_ui - m_ji)^2 + 1 / beta_ji) / 2)                                          (eq. 4)
ELBO (every constant included), evaluated right after the responsibilities are updated:
    sum_u logsumexp_j log rho_uj - KL(q(pi) || p(pi)) - sum_j KL(q(mu_j, tau_j) || p(mu_j, tau_j))          (eq. 5)
    KL of Normal-Gammas = KL(Ga(a_j, b_j) || Ga(a0, b0))
        + sum_i (beta0 / beta_ji - 1 - log(beta0 / beta_ji) + beta0 (a_j / b_j) (m_ji - m0)^2) / 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from inference.results import register_model
from models.conjugate import gamma_kl, sample_gamma

__all__ = ["BayesGMM", "MixtureData", "as_mixture_data", "NGParams", "GibbsState", "CaviState"]

LOG_2PI = math.log(2 * math.pi)
_BATCH_MAX = 5_000_000  # draws x n x K evaluated at once by log_joint


@dataclass(frozen=True, eq=False)
class MixtureData:
    """Points with optional missing coordinates. X: (n, d) float (missing entries hold 0); mask: (n, d) bool,
    True where observed."""

    X: torch.Tensor
    mask: torch.Tensor
    name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.X.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype

    @property
    def device(self) -> torch.device:
        return self.X.device

    def __repr__(self) -> str:
        n, d = self.shape
        return f"MixtureData({self.name or 'points'}: {n} x {d}, {int((~self.mask).sum())} missing, dtype={self.dtype})"


def as_mixture_data(X: Any, *, zero_is_missing: bool = False, dtype: torch.dtype = torch.float64,
                    device: str = "cpu", name: str = "") -> MixtureData:
    """Validate (n, d) points; NaN marks a missing entry (and 0 too with ``zero_is_missing``, as in the
    course's Netflix files). Raises ValueError for a wrong shape, inf, empty data or a row with nothing observed."""
    if isinstance(X, MixtureData):
        return X if X.dtype == dtype else MixtureData(X.X.to(dtype=dtype), X.mask, X.name)
    arr = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"X must be a non-empty (n, d) matrix, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("X must not contain inf")
    mask = ~np.isnan(arr)
    if zero_is_missing:
        mask &= arr != 0
    if not mask.any(1).all():
        raise ValueError(f"row {int(np.flatnonzero(~mask.any(1))[0])} of X has no observed entry")
    return MixtureData(torch.as_tensor(np.where(mask, arr, 0.0), dtype=dtype, device=device),
                       torch.as_tensor(mask, device=device), name)


class NGParams(NamedTuple):
    """Dirichlet and Normal-Gamma parameters (a posterior, or q in CAVI).
    alpha (K,); m (K, d); beta (K, d); a (K,); b (K,)."""

    alpha: torch.Tensor
    m: torch.Tensor
    beta: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor


class CaviState(NamedTuple):
    """CAVI state: q's parameters and the responsibilities r (n, K) they were computed from."""

    params: NGParams
    resp: torch.Tensor


class GibbsState(NamedTuple):
    """Gibbs state: pi (K,), mu (K, d), tau (K,). z is redrawn each sweep."""

    pi: torch.Tensor
    mu: torch.Tensor
    tau: torch.Tensor


class MixtureHooks:
    """Label-invariant quantities and comparison hooks shared by the Bayesian mixtures. Subclasses provide
    K, ``log_joint(data, pi, mu, <precision>)`` and ``component_log_lik(data, mu, <precision>)``; the
    precision site is named by ``precision_site``."""

    precision_site = "tau"
    invariant_dims = {"mu_sorted": ("sorted_entry",), "log_joint": ()}

    def objective_attrs(self, data: MixtureData, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo), "elbo_per_row": float(elbo) / data.shape[0]}

    def invariants(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, **precision: torch.Tensor):
        """The means sorted by their first coordinate, flattened (..., K d), and the log joint (...)."""
        prec = precision[self.precision_site]
        order = torch.argsort(mu[..., 0], dim=-1)
        mu_sorted = torch.gather(mu, -2, order[..., None].expand(mu.shape))
        return {"mu_sorted": mu_sorted.reshape(*mu.shape[:-2], -1), "log_joint": self.log_joint(data, pi, mu, prec)}


    def em_init(self, data: MixtureData, generator: torch.Generator):
        """Start at the posterior mean of CAVI's initial q (soft assignment to K random rows). A posterior mode
        exists only if no prior density is unbounded: alpha0 >= 1 and the component-precision condition of
        ``_check_mode``."""
        if self.alpha0 < 1:
            raise ValueError(f"EM finds the posterior mode, which does not exist when alpha0 < 1 (the Dirichlet density "
                             f"is unbounded at the simplex boundary); got alpha0={self.alpha0}: use CAVI or Gibbs")
        self._check_mode(data.shape[1])
        return self.gibbs_init(data, generator)

    def em_update(self, data: MixtureData, state):
        """E-step r_uj ∝ pi_j p(x_u | mu_j, precision_j); M-step: the joint mode of the conjugate posterior of
        (pi, mu, precision) with the responsibilities as weights (eqs. 2-3 with w = r): the Dirichlet mode
        pi_j = (alpha_j - 1) / sum_l (alpha_l - 1), and ``_component_mode`` for (mu_j, precision_j). That is the
        argmax of the expected complete log posterior, so log p(pi, mu, precision, X) never decreases."""
        logits = torch.log(state.pi)[None] + self.component_log_lik(data, state.mu, state[2])
        p = self.posterior_params(data, torch.softmax(logits, 1))
        pi = (p.alpha - 1) / (p.alpha - 1).sum()
        return type(state)(pi, *self._component_mode(p, data.shape[1]))

    def coords(self, data: MixtureData) -> dict[str, np.ndarray]:
        return {"component": np.arange(self.K), "coord": np.arange(data.shape[1]),
                "sorted_entry": np.array([f"{j}:{i}" for j in range(self.K) for i in range(data.shape[1])])}

    def split(self, data: MixtureData, test_fraction: float, generator: torch.Generator):
        """Hold out a random ``test_fraction`` of the rows."""
        n = data.shape[0]
        perm = torch.randperm(n, generator=generator)
        k = max(1, int(round(test_fraction * n)))
        te, tr = perm[:k], perm[k:]
        return (MixtureData(data.X[tr], data.mask[tr], data.name), MixtureData(data.X[te], data.mask[te], data.name))

    def pointwise_log_lik(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, **rest) -> dict[str, torch.Tensor]:
        """log p(x_u | pi, mu, precision) per row, z summed out: {"x": (..., n)} for draws with leading dims."""
        prec = torch.as_tensor(rest[self.precision_site])
        pi, mu = torch.as_tensor(pi), torch.as_tensor(mu)
        lead = pi.shape[:-1]
        flat = [t.reshape((-1,) + t.shape[len(lead):]) for t in (pi, mu, prec)]
        ll = torch.stack([torch.logsumexp(torch.log(p)[None] + self.component_log_lik(data, m, t), 1)
                          for p, m, t in zip(*flat)])
        return {"x": ll.reshape(lead + (data.shape[0],))}

    def heldout_score(self, result: Any, test: MixtureData, test_fraction: float) -> dict[str, float]:
        """Log predictive density per held-out row, log mean_s p(x_u | pi_s, mu_s, tau_s) over all draws
        (label-invariant)."""
        draws = {k: torch.as_tensor(np.asarray(result.posterior[k])).flatten(0, 1)
                 for k in ("pi", "mu", self.precision_site)}
        ll = self.pointwise_log_lik(test, **draws)["x"]  # (S, n_test)
        lpd = torch.logsumexp(ll, 0) - math.log(ll.shape[0])
        return {"heldout_lpd_per_row": float(lpd.mean())}


@register_model
@dataclass(frozen=True)
class BayesGMM(MixtureHooks):
    """Bayesian spherical Gaussian mixture (hyperparameters only).

    Args:
        K: components. alpha0: Dirichlet concentration. m0, beta0: prior mean and its precision factor.
        a0, b0: Gamma(shape, rate) prior of each component's precision.
    """

    K: int
    alpha0: float = 1.0
    m0: float = 0.0
    beta0: float = 0.1
    a0: float = 2.0
    b0: float = 2.0

    name = "bayes-gmm"
    sites = ("pi", "mu", "tau")
    dims = {"pi": ("component",), "mu": ("component", "coord"), "tau": ("component",)}
    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        for f in ("alpha0", "beta0", "a0", "b0"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f} must be a positive finite number, got {v!r}")
        if not math.isfinite(self.m0):
            raise ValueError(f"m0 must be finite, got {self.m0!r}")

    def hyperparameters(self) -> dict[str, float]:
        return {"K": self.K, "alpha0": self.alpha0, "m0": self.m0, "beta0": self.beta0, "a0": self.a0, "b0": self.b0}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> MixtureData:
        return as_mixture_data(data, dtype=dtype, device=device)

    # ------------------------------------------------------------------------------------------------
    # Generative model

    def sample(self, n: int, d: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], MixtureData]:
        """Latents from the prior and n complete points (eq. 1)."""
        K, f64 = self.K, torch.float64
        g = sample_gamma(torch.full((K,), self.alpha0, dtype=f64), torch.tensor(1.0, dtype=f64), generator)
        pi = g / g.sum()
        tau = sample_gamma(torch.full((K,), self.a0, dtype=f64), torch.tensor(self.b0, dtype=f64), generator)
        mu = self.m0 + torch.randn(K, d, generator=generator, dtype=f64) / torch.sqrt(self.beta0 * tau)[:, None]
        z = torch.multinomial(pi, n, replacement=True, generator=generator)
        X = mu[z] + torch.randn(n, d, generator=generator, dtype=f64) / torch.sqrt(tau[z])[:, None]
        return {"pi": pi, "mu": mu, "tau": tau, "z": z}, as_mixture_data(X, name=f"synthetic {n}x{d}")

    def simulate(self, size: tuple[int, int], generator: torch.Generator) -> tuple[GibbsState, MixtureData]:
        """A prior draw as a Gibbs state and ``size`` = (n, d) complete points (for SBC and Geweke tests)."""
        params, data = self.sample(*size, generator)
        return GibbsState(params["pi"], params["mu"], params["tau"]), data

    def resimulate(self, state: GibbsState, data: MixtureData, generator: torch.Generator) -> MixtureData:
        """New points given (pi, mu, tau): z ~ Cat(pi), x ~ N(mu_z, I / tau_z); the missing pattern is kept."""
        n, d = data.shape
        z = torch.multinomial(state.pi, n, replacement=True, generator=generator)
        X = state.mu[z] + torch.randn(n, d, generator=generator, dtype=state.mu.dtype) / torch.sqrt(state.tau[z])[:, None]
        return as_mixture_data(torch.where(data.mask, X, torch.nan), name=data.name)

    def model(self, data: MixtureData) -> None:
        """Pyro model with z enumerated out (use TraceEnum_ELBO, or NUTS, which sums it out)."""
        n, d = data.shape
        t = lambda v: torch.tensor(v, dtype=data.dtype, device=data.device)  # noqa: E731
        pi = pyro.sample("pi", dist.Dirichlet(t(self.alpha0).expand([self.K])))
        with pyro.plate("components", self.K):
            tau = pyro.sample("tau", dist.Gamma(t(self.a0), t(self.b0)))
            mu = pyro.sample("mu", dist.Normal(t(self.m0), 1.0 / torch.sqrt(self.beta0 * tau)[..., None])
                             .expand(tau.shape + (d,)).to_event(1))
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})
            loc = mu[..., z, :] if mu.dim() > 2 else mu[z]
            scale = (1.0 / torch.sqrt(tau))[..., z] if tau.dim() > 1 else 1.0 / torch.sqrt(tau[z])
            pyro.sample("x", dist.Normal(loc, scale[..., None]).mask(data.mask).to_event(1), obs=data.X)

    # ------------------------------------------------------------------------------------------------
    # Closed forms

    def _stats(self, data: MixtureData, w: torch.Tensor):
        O = data.mask.to(data.dtype)
        return w.T @ O, w.T @ data.X, w.T @ data.X ** 2, w.sum(0)  # N (K,d), S (K,d), Q (K,d), n_j (K,)

    def posterior_params(self, data: MixtureData, w: torch.Tensor) -> NGParams:
        """Dirichlet / Normal-Gamma parameters given weights w (n, K): eqs. 2-3."""
        N, S, Q, n_j = self._stats(data, w)
        beta = self.beta0 + N
        m = (self.beta0 * self.m0 + S) / beta
        a = self.a0 + 0.5 * N.sum(1)
        b = self.b0 + 0.5 * (Q + self.beta0 * self.m0 ** 2 - beta * m ** 2).sum(1)
        return NGParams(self.alpha0 + n_j, m, beta, a, b)

    def component_log_lik(self, data: MixtureData, mu: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """(..., n, K) sum_i o_ui log N(x_ui; mu_ji, 1/tau_j) for mu (..., K, d), tau (..., K)."""
        O = data.mask.to(data.dtype)
        dist2 = ((O * data.X ** 2).sum(1)[:, None] - 2 * data.X @ mu.transpose(-1, -2)
                 + O @ (mu ** 2).transpose(-1, -2))  # missing x are 0
        n_obs = O.sum(1)[:, None]
        return 0.5 * n_obs * (torch.log(tau)[..., None, :] - LOG_2PI) - 0.5 * tau[..., None, :] * dist2

    def log_joint(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """log p(pi, mu, tau, X) with z summed out; batched over leading dims of pi (..., K) (in chunks of
        draws so that memory stays O(chunk n K))."""
        lead = pi.shape[:-1]
        step = max(1, _BATCH_MAX // (data.shape[0] * self.K))  # draws per chunk
        if len(lead) and lead.numel() > step:
            flat = [t.reshape(-1, *t.shape[len(lead):]) for t in (pi, mu, tau)]
            return torch.cat([self._log_joint(data, *(t[i:i + step] for t in flat))
                              for i in range(0, len(flat[0]), step)]).reshape(lead)
        return self._log_joint(data, pi, mu, tau)

    def _log_joint(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        lp = torch.distributions.Dirichlet(torch.full_like(pi, self.alpha0), validate_args=False).log_prob(pi)
        a0, b0 = (torch.tensor(v, dtype=tau.dtype, device=tau.device) for v in (self.a0, self.b0))
        lp = lp + torch.distributions.Gamma(a0, b0, validate_args=False).log_prob(tau).sum(-1)
        lp = lp + torch.distributions.Normal(self.m0, 1.0 / torch.sqrt(self.beta0 * tau)[..., None],
                                             validate_args=False).log_prob(mu).sum((-2, -1))
        return lp + torch.logsumexp(torch.log(pi)[..., None, :] + self.component_log_lik(data, mu, tau), -1).sum(-1)

    def _check_mode(self, d: int) -> None:
        if self.a0 + d / 2 <= 1:
            raise ValueError(f"EM finds the posterior mode, which needs a0 + d/2 > 1 (else the Normal-Gamma density is "
                             f"unbounded as tau -> 0); got a0={self.a0}, d={d}")

    def _component_mode(self, p: NGParams, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of NG(m, beta, a, b) over mu_j (d,) and tau_j: the density is
        tau^(a - 1 + d/2) exp(-b tau - tau sum_i beta_i (mu_i - m_i)^2 / 2), so mu = m, tau = (a - 1 + d/2) / b."""
        return p.m, (p.a - 1 + d / 2) / p.b

    def _expected_log_rho(self, data: MixtureData, p: NGParams) -> torch.Tensor:
        """(n, K) log rho_uj of eq. 4."""
        O = data.mask.to(data.dtype)
        E_log_pi = torch.digamma(p.alpha) - torch.digamma(p.alpha.sum())
        E_tau, E_log_tau = p.a / p.b, torch.digamma(p.a) - torch.log(p.b)
        dist2 = (O * data.X ** 2).sum(1)[:, None] - 2 * data.X @ p.m.T + O @ (p.m ** 2).T
        n_obs = O.sum(1)[:, None]
        return (E_log_pi[None] + 0.5 * n_obs * (E_log_tau[None] - LOG_2PI) - 0.5 * E_tau[None] * dist2
                - 0.5 * O @ (1.0 / p.beta).T)

    def _kl(self, p: NGParams) -> torch.Tensor:
        """KL(q(pi) || p(pi)) + sum_j KL(q(mu_j, tau_j) || p(mu_j, tau_j)) (eq. 5)."""
        alpha0 = torch.full_like(p.alpha, self.alpha0)
        kl_pi = torch.distributions.kl_divergence(dist.Dirichlet(p.alpha), dist.Dirichlet(alpha0))
        ratio = self.beta0 / p.beta
        kl_mu = 0.5 * (ratio - 1 - torch.log(ratio) + self.beta0 * (p.a / p.b)[:, None] * (p.m - self.m0) ** 2).sum()
        return kl_pi + gamma_kl(p.a, p.b, self.a0, self.b0).sum() + kl_mu

    def elbo(self, data: MixtureData, params: NGParams, resp: torch.Tensor | None = None) -> torch.Tensor:
        """The full ELBO at q(pi) q(mu, tau) = params and q(z) = resp (None: the optimal q(z), eq. 5)."""
        log_rho = self._expected_log_rho(data, params)
        if resp is None:
            z_term = torch.logsumexp(log_rho, 1).sum()
        else:
            z_term = (resp * (log_rho - torch.log(resp.clamp_min(1e-300)))).sum()
        return z_term - self._kl(params)

    # ------------------------------------------------------------------------------------------------
    # CAVI

    def cavi_init(self, data: MixtureData, generator: torch.Generator, init: str = "default") -> CaviState:
        """Responsibilities from K distinct random rows as centres (soft assignment at the data scale), then
        q(pi), q(mu, tau) from them."""
        if init not in ("default",):
            raise ValueError(f"init must be 'default', got {init!r}")
        n = data.shape[0]
        centres = data.X[torch.randperm(n, generator=generator)[: self.K]]
        O = data.mask.to(data.dtype)
        dist2 = (O * data.X ** 2).sum(1)[:, None] - 2 * data.X @ centres.T + O @ (centres ** 2).T
        scale = dist2.mean().clamp_min(1e-12)
        resp = torch.softmax(-dist2 / scale, 1)
        return CaviState(self.posterior_params(data, resp), resp)

    def cavi_initial_elbo(self, data: MixtureData, state: CaviState, init: str) -> torch.Tensor:
        return self.elbo(data, state.params, state.resp)

    def cavi_update(self, data: MixtureData, state: CaviState, *, elbo_at: str = "after_z"):
        """q(pi), q(mu, tau) from the responsibilities (eqs. 2-3), then new responsibilities (eq. 4); ELBO (eq. 5)."""
        params = self.posterior_params(data, state.resp)
        log_rho = self._expected_log_rho(data, params)
        lse = torch.logsumexp(log_rho, 1, keepdim=True)
        return CaviState(params, torch.exp(log_rho - lse)), lse.sum() - self._kl(params)

    def sample_q(self, params: NGParams, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        S = num_samples
        g = sample_gamma(params.alpha.expand(S, -1), torch.ones_like(params.alpha), generator)
        tau = sample_gamma(params.a.expand(S, -1), params.b, generator)
        mu = params.m + torch.randn((S,) + params.m.shape, generator=generator, dtype=params.m.dtype) \
            / torch.sqrt(params.beta * tau[..., None])
        return {"pi": g / g.sum(-1, keepdim=True), "mu": mu, "tau": tau}

    def posterior_mean(self, params: NGParams) -> dict[str, torch.Tensor]:
        return {"pi": params.alpha / params.alpha.sum(), "mu": params.m, "tau": params.a / params.b}

    def log_q(self, params: NGParams | dict, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(pi, mu, tau) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        p = NGParams(**{k: torch.as_tensor(v) for k, v in params.items()}) if isinstance(params, dict) else params
        pi, mu, tau = (torch.as_tensor(draws[k]) for k in ("pi", "mu", "tau"))
        return (dist.Dirichlet(p.alpha).log_prob(pi) + dist.Gamma(p.a, p.b).log_prob(tau).sum(-1)
                + dist.Normal(p.m, 1.0 / torch.sqrt(p.beta * tau[..., None])).log_prob(mu).sum((-1, -2)))

    # ------------------------------------------------------------------------------------------------
    # SVI guide: the CAVI family for (pi, mu, tau); z is enumerated out in the model (TraceEnum_ELBO)

    svi_elbo = "enum"
    max_plate_nesting = 1
    guide_constraints = {"alpha": dist.constraints.positive, "m": dist.constraints.real,
                         "beta": dist.constraints.positive, "a": dist.constraints.positive,
                         "b": dist.constraints.positive}

    def guide_init(self, data: MixtureData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.cavi_init(data, generator).params._asdict()

    def guide(self, data: MixtureData, params: dict[str, torch.Tensor] | None = None) -> None:
        """q(pi) = Dir(alpha), q(tau_j) = Ga(a_j, b_j), q(mu_ji | tau_j) = N(m_ji, 1 / (beta_ji tau_j))."""
        if params is None:
            init = self.guide_init(data, torch.Generator().manual_seed(0))
            params = {k: pyro.param(k, v, constraint=self.guide_constraints[k]) for k, v in init.items()}
        pyro.sample("pi", dist.Dirichlet(params["alpha"]))
        with pyro.plate("components", self.K):
            tau = pyro.sample("tau", dist.Gamma(params["a"], params["b"]))
            pyro.sample("mu", dist.Normal(params["m"], 1.0 / torch.sqrt(params["beta"] * tau[..., None])).to_event(1))

    def sample_q_guide(self, params: dict[str, torch.Tensor], num_samples: int, generator: torch.Generator):
        return self.sample_q(NGParams(**params), num_samples, generator)

    def guide_mean(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.posterior_mean(NGParams(**params))

    def elbo_from_guide(self, data: MixtureData, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Closed-form ELBO (eq. 5) at the guide's q, with q(z) at its optimum."""
        return self.elbo(data, NGParams(**params))

    # ------------------------------------------------------------------------------------------------
    # Gibbs

    def gibbs_init(self, data: MixtureData, generator: torch.Generator) -> GibbsState:
        state = self.cavi_init(data, generator)
        p = self.posterior_mean(state.params)
        return GibbsState(p["pi"], p["mu"], p["tau"])

    def gibbs_sweep(self, data: MixtureData, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """z | pi, mu, tau; pi | z (eq. 3); tau | z then mu | tau, z (eq. 2)."""
        logits = torch.log(state.pi)[None] + self.component_log_lik(data, state.mu, state.tau)
        z = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator)[:, 0]
        w = torch.nn.functional.one_hot(z, self.K).to(data.dtype)
        p = self.posterior_params(data, w)
        g = sample_gamma(p.alpha, torch.ones_like(p.alpha), generator)
        tau = sample_gamma(p.a, p.b, generator)
        mu = p.m + torch.randn(p.m.shape, generator=generator, dtype=p.m.dtype) / torch.sqrt(p.beta * tau[:, None])
        return GibbsState(g / g.sum(), mu, tau)

    def log_evidence_chib(self, data: MixtureData, result: Any, generator: torch.Generator,
                          max_draws: int = 2000) -> float:
        """Chib's (1995) estimate of log p(X) from posterior draws (e.g. a Gibbs result):
        log p(X) = log p(X, theta*) - log p(theta* | X), with the posterior ordinate Rao-Blackwellised over
        z_s ~ p(z | theta_s, X) and averaged over the K! relabelings of theta* (the posterior is symmetric,
        so this removes the bias of a sampler that stays in one labelling; Neal 1999). K <= 6."""
        import itertools

        if self.K > 6:
            raise ValueError(f"log_evidence_chib enumerates K! relabelings; K={self.K} is too many")
        pi, mu, tau = (torch.as_tensor(np.asarray(result.posterior[k])).flatten(0, 1) for k in ("pi", "mu", "tau"))
        lj = result.sample_stats["log_joint"] if "log_joint" in result.sample_stats else result.posterior["log_joint"]
        lj = torch.as_tensor(np.asarray(lj)).flatten()
        best = int(torch.argmax(lj))
        star = (pi[best], mu[best], tau[best])
        keep = torch.linspace(0, len(pi) - 1, min(max_draws, len(pi))).long()
        ordinates = []
        for s in keep.tolist():
            logits = torch.log(pi[s])[None] + self.component_log_lik(data, mu[s], tau[s])
            z = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator)[:, 0]
            p = self.posterior_params(data, torch.nn.functional.one_hot(z, self.K).to(data.dtype))
            for perm in itertools.permutations(range(self.K)):
                perm = list(perm)
                ps, ms, ts = star[0][perm], star[1][perm], star[2][perm]
                ordinates.append(dist.Dirichlet(p.alpha).log_prob(ps) + dist.Gamma(p.a, p.b).log_prob(ts).sum()
                                 + dist.Normal(p.m, 1.0 / torch.sqrt(p.beta * ts[:, None])).log_prob(ms).sum())
        log_ordinate = torch.logsumexp(torch.stack(ordinates), 0) - math.log(len(ordinates))
        return float(self.log_joint(data, *star) - log_ordinate)
