"""Bayesian Gaussian mixture with full covariances: Dirichlet / Normal-Wishart priors (Bishop 2006, sec. 10.2).

Notation (Bishop's): n rows, D coordinates, K components; complete data only (missing coordinates are
supported by the spherical models.bayes_gmm.BayesGMM and by models.gmm_missing).
    pi ~ Dir(alpha0 1_K),  Lambda_j ~ W(W0, nu0),  mu_j | Lambda_j ~ N(m0, (beta0 Lambda_j)^-1)
    z_u ~ Cat(pi),  x_u | z_u = j ~ N(mu_j, Lambda_j^-1)                                              (eq. 1)
With weights w_uj: N_j = sum_u w_uj, xbar_j = sum_u w_uj x_u / N_j, S_j = sum_u w_uj (x_u - xbar_j)(x_u - xbar_j)^T / N_j.
Normal-Wishart update (Bishop 10.58-10.63), shared by Gibbs (hard w) and CAVI (w = responsibilities):
    alpha_j = alpha0 + N_j,  beta_j = beta0 + N_j,  m_j = (beta0 m0 + N_j xbar_j) / beta_j,  nu_j = nu0 + N_j,
    W_j^-1 = W0^-1 + N_j S_j + beta0 N_j / (beta0 + N_j) (xbar_j - m0)(xbar_j - m0)^T                      (eq. 2)
CAVI responsibilities (Bishop 10.64-10.67):
    log rho_uj = E[log pi_j] + E[log|Lambda_j|] / 2 - D/2 log(2 pi) - (D / beta_j + nu_j (x_u - m_j)^T W_j (x_u - m_j)) / 2
    E[log|Lambda_j|] = sum_{i=1..D} digamma((nu_j + 1 - i) / 2) + D log 2 + log|W_j|                        (eq. 3)
ELBO (every constant included): sum_u logsumexp_j log rho_uj - KL(q(pi)||p(pi)) - sum_j KL(q(mu_j, Lambda_j)||p(.)),
    KL(NW_q || NW_p) = KL(W(W_j, nu_j) || W(W0, nu0))
                       + (D beta0 / beta_j - D + D log(beta_j / beta0) + beta0 nu_j (m_j - m0)^T W_j (m_j - m0)) / 2  (eq. 4)
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
from models.bayes_gmm import MixtureData, MixtureHooks, as_mixture_data
from models.conjugate import sample_gamma

__all__ = ["BayesGMMFull", "NWParams", "wishart_kl", "sample_wishart"]

LOG_2PI = math.log(2 * math.pi)


class NWParams(NamedTuple):
    """alpha (K,), m (K, D), beta (K,), W (K, D, D) Wishart scale, nu (K,)."""

    alpha: torch.Tensor
    m: torch.Tensor
    beta: torch.Tensor
    W: torch.Tensor
    nu: torch.Tensor


class CaviState(NamedTuple):
    params: NWParams
    resp: torch.Tensor


class GibbsState(NamedTuple):
    """pi (K,), mu (K, D), Lambda (K, D, D) precisions."""

    pi: torch.Tensor
    mu: torch.Tensor
    Lambda: torch.Tensor


def _mv_digamma(x: torch.Tensor, D: int) -> torch.Tensor:
    return sum(torch.digamma(x + (1 - i) / 2) for i in range(1, D + 1))


def expected_logdet(W: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """E[log|Lambda|] for Lambda ~ W(W, nu) (eq. 3). W (..., D, D), nu (...)."""
    D = W.shape[-1]
    return _mv_digamma(nu / 2, D) + D * math.log(2) + torch.logdet(W)


def wishart_kl(Wq: torch.Tensor, nuq: torch.Tensor, Wp: torch.Tensor, nup: torch.Tensor) -> torch.Tensor:
    """KL(W(Wq, nuq) || W(Wp, nup)) with scale matrices W (E[Lambda] = nu W):
    (nuq - nup)/2 psi_D(nuq/2) - nuq D/2 + nuq/2 tr(Wp^-1 Wq) - nup/2 log|Wp^-1 Wq| + log Gamma_D(nup/2) - log Gamma_D(nuq/2)."""
    D = Wq.shape[-1]
    Wp_inv_Wq = torch.linalg.solve(Wp, Wq)
    return ((nuq - nup) / 2 * _mv_digamma(nuq / 2, D) - nuq * D / 2
            + nuq / 2 * Wp_inv_Wq.diagonal(dim1=-2, dim2=-1).sum(-1) - nup / 2 * torch.logdet(Wp_inv_Wq)
            + torch.mvlgamma(nup / 2, D) - torch.mvlgamma(nuq / 2, D))


def sample_wishart(W: torch.Tensor, nu: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lambda ~ W(W, nu) by the Bartlett decomposition, from an explicit generator. W (K, D, D), nu (K,)."""
    K, D = W.shape[0], W.shape[-1]
    L = torch.linalg.cholesky(W)
    A = torch.zeros(K, D, D, dtype=W.dtype)
    dof = nu[:, None] - torch.arange(D, dtype=W.dtype)[None, :]  # nu - i + 1 for i = 1..D
    A.diagonal(dim1=-2, dim2=-1).copy_(torch.sqrt(2 * sample_gamma(dof / 2, torch.ones_like(dof), generator)))
    tril = torch.tril(torch.ones(D, D, dtype=torch.bool), -1)
    A[:, tril] = torch.randn(K, int(tril.sum()), generator=generator, dtype=W.dtype)
    LA = L @ A
    return LA @ LA.transpose(-1, -2)


@register_model
@dataclass(frozen=True)
class BayesGMMFull(MixtureHooks):
    """Bayesian full-covariance Gaussian mixture (hyperparameters only). W0 = w0 I and nu0 default to D + 1
    when the data arrive (``nu0 = None``).

    Args:
        K: components; alpha0: Dirichlet concentration; m0, beta0: prior mean (scalar, all coordinates) and
        precision factor; w0: the Wishart scale W0 = w0 I; nu0: Wishart degrees of freedom (> D - 1).
    """

    K: int
    alpha0: float = 1.0
    m0: float = 0.0
    beta0: float = 0.1
    w0: float = 1.0
    nu0: float | None = None

    name = "bayes-gmm-full"
    sites = ("pi", "mu", "Lambda")
    dims = {"pi": ("component",), "mu": ("component", "coord"), "Lambda": ("component", "coord", "coord2")}
    precision_site = "Lambda"
    max_plate_nesting = 1

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        for f in ("alpha0", "beta0", "w0"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f} must be a positive finite number, got {v!r}")

    def hyperparameters(self) -> dict[str, Any]:
        return {"K": self.K, "alpha0": self.alpha0, "m0": self.m0, "beta0": self.beta0, "w0": self.w0, "nu0": self.nu0}

    def _nu0(self, D: int) -> float:
        nu0 = D + 1.0 if self.nu0 is None else float(self.nu0)
        if nu0 <= D - 1:
            raise ValueError(f"nu0 must exceed D - 1 = {D - 1}, got {nu0}")
        return nu0

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> MixtureData:
        data = as_mixture_data(data, dtype=dtype, device=device)
        if not bool(data.mask.all()):
            raise ValueError("BayesGMMFull needs complete data (no NaN); use BayesGMM (spherical) for missing entries")
        return data

    def _prior(self, D: int, like: torch.Tensor):
        return (torch.full((D,), self.m0, dtype=like.dtype), self.w0 * torch.eye(D, dtype=like.dtype), self._nu0(D))

    # ------------------------------------------------------------------------------------------------
    # Generative model

    def sample(self, n: int, D: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], MixtureData]:
        f64 = torch.float64
        m0, W0, nu0 = self._prior(D, torch.zeros((), dtype=f64))
        g = sample_gamma(torch.full((self.K,), self.alpha0, dtype=f64), torch.tensor(1.0, dtype=f64), generator)
        Lam = sample_wishart(W0.expand(self.K, D, D), torch.full((self.K,), nu0, dtype=f64), generator)
        mu = m0 + self._mvn_noise(Lam * self.beta0, generator)
        z = torch.multinomial(g / g.sum(), n, replacement=True, generator=generator)
        X = mu[z] + self._mvn_noise(Lam[z], generator)
        return {"pi": g / g.sum(), "mu": mu, "Lambda": Lam, "z": z}, as_mixture_data(X, name=f"synthetic {n}x{D}")

    @staticmethod
    def _mvn_noise(precision: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draws of N(0, precision^-1), one per leading index. precision (..., D, D)."""
        L = torch.linalg.cholesky(precision)  # precision = L L^T; x = L^-T eps has covariance precision^-1
        eps = torch.randn(precision.shape[:-1], generator=generator, dtype=precision.dtype)
        return torch.linalg.solve_triangular(L.transpose(-1, -2), eps[..., None], upper=True)[..., 0]

    def simulate(self, size: tuple[int, int], generator: torch.Generator) -> tuple[GibbsState, MixtureData]:
        """A prior draw as a Gibbs state and ``size`` = (n, D) points (for SBC and Geweke tests)."""
        params, data = self.sample(*size, generator)
        return GibbsState(params["pi"], params["mu"], params["Lambda"]), data

    def resimulate(self, state: GibbsState, data: MixtureData, generator: torch.Generator) -> MixtureData:
        """New points given (pi, mu, Lambda): z ~ Cat(pi), x ~ N(mu_z, Lambda_z^-1)."""
        z = torch.multinomial(state.pi, data.shape[0], replacement=True, generator=generator)
        return as_mixture_data(state.mu[z] + self._mvn_noise(state.Lambda[z], generator), name=data.name)

    def model(self, data: MixtureData) -> None:
        """Pyro model with z enumerated out."""
        n, D = data.shape
        m0, W0, nu0 = self._prior(D, data.X)
        pi = pyro.sample("pi", dist.Dirichlet(torch.full((self.K,), self.alpha0, dtype=data.dtype)))
        with pyro.plate("components", self.K):
            Lam = pyro.sample("Lambda", dist.Wishart(torch.tensor(nu0, dtype=data.dtype), covariance_matrix=W0))
            mu = pyro.sample("mu", dist.MultivariateNormal(m0, precision_matrix=self.beta0 * Lam))
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.MultivariateNormal(mu[z], precision_matrix=Lam[z]), obs=data.X)

    def nuts_model(self, data: MixtureData) -> None:
        """The same model with each Lambda_j written through its Bartlett decomposition, so that NUTS works in
        unconstrained coordinates (torch has no bijection onto positive-definite matrices):
        Lambda_j = L0 A_j A_j^T L0^T, W0 = L0 L0^T, A_j lower-triangular with A_j,ii^2 ~ chi^2(nu0 - i + 1)
        (site "bartlett_diag2", Gamma((nu0 - i + 1)/2, 1/2)) and A_j,ik ~ N(0, 1) below the diagonal
        ("bartlett_offdiag"). This map is a bijection and induces exactly W(W0, nu0)."""
        n, D = data.shape
        m0, W0, nu0 = self._prior(D, data.X)
        dt = data.dtype
        pi = pyro.sample("pi", dist.Dirichlet(torch.full((self.K,), self.alpha0, dtype=dt)))
        tril = torch.tril(torch.ones(D, D, dtype=torch.bool), -1)
        with pyro.plate("components", self.K):
            dof = nu0 - torch.arange(D, dtype=dt)
            c2 = pyro.sample("bartlett_diag2", dist.Gamma(dof / 2, torch.tensor(0.5, dtype=dt)).to_event(1))
            off = pyro.sample("bartlett_offdiag", dist.Normal(torch.zeros(int(tril.sum()), dtype=dt), 1.0).to_event(1))
            Lam = self.bartlett_to_precision(c2, off, W0)
            mu = pyro.sample("mu", dist.MultivariateNormal(m0, precision_matrix=self.beta0 * Lam))
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Categorical(pi), infer={"enumerate": "parallel"})
            pyro.sample("x", dist.MultivariateNormal(mu[z], precision_matrix=Lam[z]), obs=data.X)

    @staticmethod
    def bartlett_to_precision(c2: torch.Tensor, off: torch.Tensor, W0: torch.Tensor) -> torch.Tensor:
        """Lambda = L0 A A^T L0^T from the Bartlett coordinates: c2 (..., D) squared diagonal, off (..., D(D-1)/2)."""
        D = W0.shape[-1]
        A = torch.zeros(c2.shape[:-1] + (D, D), dtype=c2.dtype)
        A = A + torch.diag_embed(torch.sqrt(c2))
        rows, cols = torch.tril_indices(D, D, -1)
        A[..., rows, cols] = off
        LA = torch.linalg.cholesky(W0) @ A
        return LA @ LA.transpose(-1, -2)

    def nuts_postprocess(self, samples: dict[str, torch.Tensor], data: MixtureData) -> dict[str, torch.Tensor]:
        """Map NUTS draws of the Bartlett coordinates back to Lambda."""
        W0 = self._prior(data.shape[1], data.X)[1]
        out = {k: v for k, v in samples.items() if not k.startswith("bartlett")}
        out["Lambda"] = self.bartlett_to_precision(samples["bartlett_diag2"], samples["bartlett_offdiag"], W0)
        return out

    # ------------------------------------------------------------------------------------------------
    # Closed forms

    def posterior_params(self, data: MixtureData, w: torch.Tensor) -> NWParams:
        """eq. 2 from weights w (n, K)."""
        X = data.X
        D = X.shape[1]
        m0, W0, nu0 = self._prior(D, X)
        N = w.sum(0)
        xbar = (w.T @ X) / N.clamp_min(1e-300)[:, None]
        diff = X[None] - xbar[:, None]  # (K, n, D)
        NS = torch.einsum("kn,kni,knj->kij", w.T, diff, diff)
        dm = xbar - m0
        W_inv = (torch.linalg.inv(W0) + NS
                 + (self.beta0 * N / (self.beta0 + N))[:, None, None] * dm[:, :, None] * dm[:, None, :])
        beta = self.beta0 + N
        m = (self.beta0 * m0 + N[:, None] * xbar) / beta[:, None]
        W = torch.linalg.inv(W_inv)
        return NWParams(self.alpha0 + N, m, beta, 0.5 * (W + W.transpose(-1, -2)), nu0 + N)

    def _check_mode(self, D: int) -> None:
        if self._nu0(D) <= D:
            raise ValueError(f"EM finds the posterior mode, which needs nu0 > D = {D} (else an empty component's "
                             f"Normal-Wishart density is unbounded); got nu0={self._nu0(D)}")

    def _component_mode(self, p: NWParams, D: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of NW(m, beta, W, nu): the density is |Lambda|^((nu - D)/2) exp(-tr(W^-1 Lambda)/2
        - beta (mu - m)^T Lambda (mu - m)/2) up to constants, so mu = m, Lambda = (nu - D) W."""
        return p.m, (p.nu - D)[:, None, None] * p.W

    def component_log_lik(self, data: MixtureData, mu: torch.Tensor, Lambda: torch.Tensor) -> torch.Tensor:
        """(n, K) log N(x_u; mu_j, Lambda_j^-1)."""
        diff = data.X[:, None, :] - mu[None]  # (n, K, D)
        maha = torch.einsum("nki,kij,nkj->nk", diff, Lambda, diff)
        D = data.shape[1]
        return 0.5 * torch.logdet(Lambda)[None] - 0.5 * D * LOG_2PI - 0.5 * maha

    def log_joint(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, Lambda: torch.Tensor) -> torch.Tensor:
        """log p(pi, mu, Lambda, X) with z summed out; batched over leading dims of pi."""
        if pi.dim() > 1:
            lead = pi.shape[:-1]
            flat = (pi.reshape(-1, pi.shape[-1]), mu.reshape(-1, *mu.shape[-2:]), Lambda.reshape(-1, *Lambda.shape[-3:]))
            return torch.stack([self.log_joint(data, *v) for v in zip(*flat)]).reshape(lead)
        D = data.shape[1]
        m0, W0, nu0 = self._prior(D, data.X)
        lp = dist.Dirichlet(torch.full_like(pi, self.alpha0)).log_prob(pi)
        lp = lp + dist.Wishart(torch.tensor(nu0, dtype=pi.dtype), covariance_matrix=W0).log_prob(Lambda).sum()
        lp = lp + dist.MultivariateNormal(m0, precision_matrix=self.beta0 * Lambda).log_prob(mu).sum()
        return lp + torch.logsumexp(torch.log(pi)[None] + self.component_log_lik(data, mu, Lambda), 1).sum()

    def _log_rho(self, data: MixtureData, p: NWParams) -> torch.Tensor:
        D = data.shape[1]
        E_log_pi = torch.digamma(p.alpha) - torch.digamma(p.alpha.sum())
        diff = data.X[:, None, :] - p.m[None]
        maha = torch.einsum("nki,kij,nkj->nk", diff, p.W, diff)
        return (E_log_pi[None] + 0.5 * expected_logdet(p.W, p.nu)[None] - 0.5 * D * LOG_2PI
                - 0.5 * (D / p.beta[None] + p.nu[None] * maha))  # eq. 3

    def _kl(self, data: MixtureData, p: NWParams) -> torch.Tensor:
        D = data.shape[1]
        m0, W0, nu0 = self._prior(D, data.X)
        kl_pi = torch.distributions.kl_divergence(dist.Dirichlet(p.alpha), dist.Dirichlet(torch.full_like(p.alpha,
                                                                                                            self.alpha0)))
        dm = p.m - m0
        quad = torch.einsum("ki,kij,kj->k", dm, p.W, dm)
        kl_mu = 0.5 * (D * self.beta0 / p.beta - D + D * torch.log(p.beta / self.beta0) + self.beta0 * p.nu * quad)
        return kl_pi + (wishart_kl(p.W, p.nu, W0, torch.tensor(nu0, dtype=p.nu.dtype)) + kl_mu).sum()  # eq. 4

    def elbo(self, data: MixtureData, params: NWParams, resp: torch.Tensor | None = None) -> torch.Tensor:
        log_rho = self._log_rho(data, params)
        if resp is None:
            z_term = torch.logsumexp(log_rho, 1).sum()
        else:
            z_term = (resp * (log_rho - torch.log(resp.clamp_min(1e-300)))).sum()
        return z_term - self._kl(data, params)

    # ------------------------------------------------------------------------------------------------
    # CAVI

    def cavi_init(self, data: MixtureData, generator: torch.Generator, init: str = "default") -> CaviState:
        if init != "default":
            raise ValueError(f"init must be 'default', got {init!r}")
        n = data.shape[0]
        centres = data.X[torch.randperm(n, generator=generator)[: self.K]]
        dist2 = ((data.X[:, None, :] - centres[None]) ** 2).sum(-1)
        resp = torch.softmax(-dist2 / dist2.mean().clamp_min(1e-12), 1)
        return CaviState(self.posterior_params(data, resp), resp)

    def cavi_initial_elbo(self, data: MixtureData, state: CaviState, init: str) -> torch.Tensor:
        return self.elbo(data, state.params, state.resp)

    def cavi_update(self, data: MixtureData, state: CaviState, *, elbo_at: str = "after_z"):
        params = self.posterior_params(data, state.resp)                     # eq. 2
        log_rho = self._log_rho(data, params)                                 # eq. 3
        lse = torch.logsumexp(log_rho, 1, keepdim=True)
        return CaviState(params, torch.exp(log_rho - lse)), lse.sum() - self._kl(data, params)

    def sample_q(self, params: NWParams, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        draws = {"pi": [], "mu": [], "Lambda": []}
        for _ in range(num_samples):
            g = sample_gamma(params.alpha, torch.ones_like(params.alpha), generator)
            Lam = sample_wishart(params.W, params.nu, generator)
            draws["pi"].append(g / g.sum())
            draws["Lambda"].append(Lam)
            draws["mu"].append(params.m + self._mvn_noise(params.beta[:, None, None] * Lam, generator))
        return {k: torch.stack(v) for k, v in draws.items()}

    def posterior_mean(self, params: NWParams) -> dict[str, torch.Tensor]:
        return {"pi": params.alpha / params.alpha.sum(), "mu": params.m, "Lambda": params.nu[:, None, None] * params.W}

    def log_q(self, params: NWParams | dict, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(pi, mu, Lambda) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        if isinstance(params, dict):  # a guide's parameters, or a stored variational group
            params = {k: torch.as_tensor(v) for k, v in params.items()}
            p = NWParams(**params) if "nu" in params else self._from_guide(params)
        else:
            p = params
        pi, mu, Lam = (torch.as_tensor(draws[k]) for k in ("pi", "mu", "Lambda"))
        return (dist.Dirichlet(p.alpha).log_prob(pi) + dist.Wishart(p.nu, covariance_matrix=p.W).log_prob(Lam).sum(-1)
                + dist.MultivariateNormal(p.m, precision_matrix=p.beta[:, None, None] * Lam).log_prob(mu).sum(-1))

    # ------------------------------------------------------------------------------------------------
    # SVI guide: CAVI's family for (pi, mu, Lambda); z is enumerated out in the model (TraceEnum_ELBO).
    # The Wishart degrees of freedom are stored as nu_excess = nu - (D - 1) > 0.

    svi_elbo = "enum"
    guide_constraints = {"alpha": dist.constraints.positive, "m": dist.constraints.real,
                         "beta": dist.constraints.positive, "W": dist.constraints.positive_definite,
                         "nu_excess": dist.constraints.positive}

    @staticmethod
    def _from_guide(params: dict[str, torch.Tensor]) -> NWParams:
        D = params["m"].shape[-1]
        return NWParams(params["alpha"], params["m"], params["beta"], params["W"], params["nu_excess"] + D - 1)

    def guide_init(self, data: MixtureData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        p = self.cavi_init(data, generator).params
        return {"alpha": p.alpha, "m": p.m, "beta": p.beta, "W": p.W, "nu_excess": p.nu - data.shape[1] + 1}

    def guide(self, data: MixtureData, params: dict[str, torch.Tensor] | None = None) -> None:
        """q(pi) = Dir(alpha), q(Lambda_j) = W(W_j, nu_j), q(mu_j | Lambda_j) = N(m_j, (beta_j Lambda_j)^-1)."""
        if params is None:
            init = self.guide_init(data, torch.Generator().manual_seed(0))
            params = {k: pyro.param(k, v, constraint=self.guide_constraints[k]) for k, v in init.items()}
        p = self._from_guide(params)
        pyro.sample("pi", dist.Dirichlet(p.alpha))
        with pyro.plate("components", self.K):
            Lam = pyro.sample("Lambda", dist.Wishart(p.nu, covariance_matrix=p.W))
            pyro.sample("mu", dist.MultivariateNormal(p.m, precision_matrix=p.beta[..., None, None] * Lam))

    def sample_q_guide(self, params: dict[str, torch.Tensor], num_samples: int, generator: torch.Generator):
        return self.sample_q(self._from_guide(params), num_samples, generator)

    def guide_mean(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.posterior_mean(self._from_guide(params))

    def elbo_from_guide(self, data: MixtureData, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Closed-form ELBO (eq. 4) at the guide's q, with q(z) at its optimum."""
        return self.elbo(data, self._from_guide(params))

    # ------------------------------------------------------------------------------------------------
    # Gibbs

    def gibbs_init(self, data: MixtureData, generator: torch.Generator) -> GibbsState:
        p = self.posterior_mean(self.cavi_init(data, generator).params)
        return GibbsState(p["pi"], p["mu"], p["Lambda"])

    def gibbs_sweep(self, data: MixtureData, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """z | pi, mu, Lambda; pi | z; Lambda | z then mu | Lambda, z (eq. 2)."""
        logits = torch.log(state.pi)[None] + self.component_log_lik(data, state.mu, state.Lambda)
        z = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator)[:, 0]
        p = self.posterior_params(data, torch.nn.functional.one_hot(z, self.K).to(data.dtype))
        g = sample_gamma(p.alpha, torch.ones_like(p.alpha), generator)
        Lam = sample_wishart(p.W, p.nu, generator)
        mu = p.m + self._mvn_noise(p.beta[:, None, None] * Lam, generator)
        return GibbsState(g / g.sum(), mu, Lam)
