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

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributions as td

from models.conjugate import LOG_2PI, normal_gamma_kl, sample_gamma
from models.data import MixtureData, as_mixture_data
from models.mixture.base import BayesMixture, CaviState, check_positive
from models.protocol import Conditional

__all__ = ["BayesGMM", "NGParams", "GibbsState", "CaviState"]


class NGParams(NamedTuple):
    """Dirichlet and Normal-Gamma parameters (a posterior, or q in CAVI): alpha (K,); m (K, d); beta (K, d); a (K,);
    b (K,). As a variational family: q(pi) = Dir(alpha), q(tau_j) = Ga(a_j, b_j), q(mu_ji | tau_j) =
    N(m_ji, 1 / (beta_ji tau_j)); the SVI guide uses the same parameters."""

    alpha: torch.Tensor
    m: torch.Tensor
    beta: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        S = num_samples
        g = sample_gamma(self.alpha.expand(S, -1), torch.ones_like(self.alpha), generator)
        tau = sample_gamma(self.a.expand(S, -1), self.b, generator)
        mu = self.m + torch.randn((S,) + self.m.shape, generator=generator, dtype=self.m.dtype) \
            / torch.sqrt(self.beta * tau[..., None])
        return {"pi": g / g.sum(-1, keepdim=True), "mu": mu, "tau": tau}

    def mean(self) -> dict[str, torch.Tensor]:
        return {"pi": self.alpha / self.alpha.sum(), "mu": self.m, "tau": self.a / self.b}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(pi, mu, tau) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        pi, mu, tau = (torch.as_tensor(draws[k]) for k in ("pi", "mu", "tau"))
        return (td.Dirichlet(self.alpha).log_prob(pi) + td.Gamma(self.a, self.b).log_prob(tau).sum(-1)
                + td.Normal(self.m, 1.0 / torch.sqrt(self.beta * tau[..., None])).log_prob(mu).sum((-1, -2)))

    def to_guide(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> NGParams:
        return cls(**{k: torch.as_tensor(params[k]) for k in cls._fields})

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    from_dict = from_guide


class GibbsState(NamedTuple):
    """Gibbs state: pi (K,), mu (K, d), tau (K,). z is redrawn each sweep."""

    pi: torch.Tensor
    mu: torch.Tensor
    tau: torch.Tensor


@dataclass(frozen=True)
class BayesGMM(BayesMixture):
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
    dims = {"pi": ("component",), "mu": ("component", "coord"), "tau": ("component",)}
    precision_site = "tau"
    family = NGParams
    GibbsState = GibbsState
    batched_log_joint = True

    def __post_init__(self) -> None:
        check_positive(self, ("alpha0", "beta0", "a0", "b0"))
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

    def resimulate(self, state: GibbsState, data: MixtureData, generator: torch.Generator) -> MixtureData:
        """New points given (pi, mu, tau): z ~ Cat(pi), x ~ N(mu_z, I / tau_z); the missing pattern is kept."""
        n, d = data.shape
        z = torch.multinomial(state.pi, n, replacement=True, generator=generator)
        X = state.mu[z] + torch.randn(n, d, generator=generator, dtype=state.mu.dtype) / torch.sqrt(state.tau[z])[:, None]
        return as_mixture_data(torch.where(data.mask, X, torch.nan), name=data.name)

    def model(self, data: MixtureData) -> None:
        """Pyro model with z enumerated out (use TraceEnum_ELBO, or NUTS, which sums it out)."""
        import pyro
        import pyro.distributions as dist

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

    def guide(self, data: MixtureData, params: dict[str, torch.Tensor]) -> None:
        """q(pi) = Dir(alpha), q(tau_j) = Ga(a_j, b_j), q(mu_ji | tau_j) = N(m_ji, 1 / (beta_ji tau_j))."""
        import pyro
        import pyro.distributions as dist

        pyro.sample("pi", dist.Dirichlet(params["alpha"]))
        with pyro.plate("components", self.K):
            tau = pyro.sample("tau", dist.Gamma(params["a"], params["b"]))
            pyro.sample("mu", dist.Normal(params["m"], 1.0 / torch.sqrt(params["beta"] * tau[..., None])).to_event(1))

    @property
    def guide_constraints(self) -> dict[str, Any]:
        c = td.constraints
        return {"alpha": c.positive, "m": c.real, "beta": c.positive, "a": c.positive, "b": c.positive}

    # ------------------------------------------------------------------------------------------------
    # Component maths

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

    def prior_log_density(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """log p(pi) + log p(tau) + log p(mu | tau), batched over leading dims."""
        lp = torch.distributions.Dirichlet(torch.full_like(pi, self.alpha0), validate_args=False).log_prob(pi)
        a0, b0 = (torch.tensor(v, dtype=tau.dtype, device=tau.device) for v in (self.a0, self.b0))
        lp = lp + torch.distributions.Gamma(a0, b0, validate_args=False).log_prob(tau).sum(-1)
        return lp + torch.distributions.Normal(self.m0, 1.0 / torch.sqrt(self.beta0 * tau)[..., None],
                                               validate_args=False).log_prob(mu).sum((-2, -1))

    def expected_component_log_lik(self, data: MixtureData, p: NGParams) -> torch.Tensor:
        """(n, K) E_q[sum_i o_ui log N(x_ui; mu_ji, 1/tau_j)], the data part of eq. 4."""
        O = data.mask.to(data.dtype)
        E_tau, E_log_tau = p.a / p.b, torch.digamma(p.a) - torch.log(p.b)
        dist2 = (O * data.X ** 2).sum(1)[:, None] - 2 * data.X @ p.m.T + O @ (p.m ** 2).T
        n_obs = O.sum(1)[:, None]
        return 0.5 * n_obs * (E_log_tau[None] - LOG_2PI) - 0.5 * E_tau[None] * dist2 - 0.5 * O @ (1.0 / p.beta).T

    def component_kl(self, data: MixtureData, p: NGParams) -> torch.Tensor:
        """(K,) KL(q(mu_j, tau_j) || p(mu_j, tau_j)) of the Normal-Gammas (eq. 5)."""
        return normal_gamma_kl(p.m, p.beta, p.a, p.b, self.m0, self.beta0, self.a0, self.b0)

    def sample_components(self, p: NGParams, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, tau) ~ eq. 2: tau_j ~ Ga(a_j, b_j), then mu_j | tau_j ~ N(m_j, 1 / (beta_j tau_j))."""
        tau = sample_gamma(p.a, p.b, generator)
        mu = p.m + torch.randn(p.m.shape, generator=generator, dtype=p.m.dtype) / torch.sqrt(p.beta * tau[:, None])
        return mu, tau

    def component_conditional(self, p: NGParams) -> Conditional:
        """(mu, tau) | z as a Conditional (Normal-Gamma, eq. 2)."""
        def sample(generator):
            mu, tau = self.sample_components(p, generator)
            return {"mu": mu, "tau": tau}

        def log_prob(v):
            return (td.Gamma(p.a, p.b).log_prob(v["tau"]).sum()
                    + td.Normal(p.m, 1.0 / torch.sqrt(p.beta * v["tau"][:, None])).log_prob(v["mu"]).sum())
        return Conditional(("mu", "tau"), sample, log_prob)

    def check_mode(self, d: int) -> None:
        if self.a0 + d / 2 <= 1:
            raise ValueError(f"EM finds the posterior mode, which needs a0 + d/2 > 1 (else the Normal-Gamma density is "
                             f"unbounded as tau -> 0); got a0={self.a0}, d={d}")

    def component_mode(self, p: NGParams, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of NG(m, beta, a, b) over mu_j (d,) and tau_j: the density is
        tau^(a - 1 + d/2) exp(-b tau - tau sum_i beta_i (mu_i - m_i)^2 / 2), so mu = m, tau = (a - 1 + d/2) / b."""
        return p.m, (p.a - 1 + d / 2) / p.b

    # ------------------------------------------------------------------------------------------------
    # Chib's evidence estimate

    def log_evidence_chib(self, data: MixtureData, result: Any, generator: torch.Generator,
                          max_draws: int = 2000) -> float:
        """Chib's (1995) estimate of log p(X) from posterior draws (e.g. a Gibbs result):
        log p(X) = log p(X, theta*) - log p(theta* | X), with the posterior ordinate Rao-Blackwellised over
        z_s ~ p(z | theta_s, X) and averaged over the K! relabelings of theta* (the posterior is symmetric,
        so this removes the bias of a sampler that stays in one labelling; Neal 1999). K <= 6."""
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
                ordinates.append(td.Dirichlet(p.alpha).log_prob(ps) + td.Gamma(p.a, p.b).log_prob(ts).sum()
                                 + td.Normal(p.m, 1.0 / torch.sqrt(p.beta * ts[:, None])).log_prob(ms).sum())
        log_ordinate = torch.logsumexp(torch.stack(ordinates), 0) - math.log(len(ordinates))
        return float(self.log_joint(data, *star) - log_ordinate)
