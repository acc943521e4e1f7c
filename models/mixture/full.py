"""Bayesian Gaussian mixture with full covariances: Dirichlet / Normal-Wishart priors (Bishop 2006, sec. 10.2).

Notation (Bishop's): n rows, D coordinates, K components; complete data only (missing coordinates are
supported by the spherical models.mixture.spherical.BayesGMM and by models.mixture.em_missing).
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

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.distributions as td

from models.conjugate import (LOG_2PI, normal_wishart_kl, normal_wishart_mode, normal_wishart_update, sample_gamma,
                              sample_gaussian_precision, sample_wishart, wishart_expected_logdet)
from models.data import MixtureData, as_mixture_data
from models.mixture.base import BayesMixture, CaviState, check_positive
from models.protocol import Conditional

__all__ = ["BayesGMMFull", "NWParams", "GibbsState", "CaviState"]


class NWParams(NamedTuple):
    """alpha (K,), m (K, D), beta (K,), W (K, D, D) Wishart scale, nu (K,). As a variational family:
    q(pi) = Dir(alpha), q(Lambda_j) = W(W_j, nu_j), q(mu_j | Lambda_j) = N(m_j, (beta_j Lambda_j)^-1). The SVI guide
    stores the Wishart degrees of freedom as nu_excess = nu - (D - 1) > 0."""

    alpha: torch.Tensor
    m: torch.Tensor
    beta: torch.Tensor
    W: torch.Tensor
    nu: torch.Tensor

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        draws = {"pi": [], "mu": [], "Lambda": []}
        for _ in range(num_samples):
            g = sample_gamma(self.alpha, torch.ones_like(self.alpha), generator)
            Lam = sample_wishart(self.W, self.nu, generator)
            draws["pi"].append(g / g.sum())
            draws["Lambda"].append(Lam)
            draws["mu"].append(self.m + sample_gaussian_precision(self.beta[:, None, None] * Lam, generator))
        return {k: torch.stack(v) for k, v in draws.items()}

    def mean(self) -> dict[str, torch.Tensor]:
        return {"pi": self.alpha / self.alpha.sum(), "mu": self.m, "Lambda": self.nu[:, None, None] * self.W}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(pi, mu, Lambda) of draws (S, ...) -> (S,) (for PSIS importance weights p / q)."""
        pi, mu, Lam = (torch.as_tensor(draws[k]) for k in ("pi", "mu", "Lambda"))
        return (td.Dirichlet(self.alpha).log_prob(pi) + td.Wishart(self.nu, covariance_matrix=self.W).log_prob(Lam).sum(-1)
                + td.MultivariateNormal(self.m, precision_matrix=self.beta[:, None, None] * Lam).log_prob(mu).sum(-1))

    def to_guide(self) -> dict[str, torch.Tensor]:
        return {"alpha": self.alpha, "m": self.m, "beta": self.beta, "W": self.W,
                "nu_excess": self.nu - self.m.shape[-1] + 1}

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> NWParams:
        p = {k: torch.as_tensor(v) for k, v in params.items()}
        D = p["m"].shape[-1]
        return cls(p["alpha"], p["m"], p["beta"], p["W"], p["nu_excess"] + D - 1)

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> NWParams:
        return cls(**{k: torch.as_tensor(params[k]) for k in cls._fields})


class GibbsState(NamedTuple):
    """pi (K,), mu (K, D), Lambda (K, D, D) precisions."""

    pi: torch.Tensor
    mu: torch.Tensor
    Lambda: torch.Tensor


def sample_mvn_noise(precision: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draws of N(0, precision^-1), one per leading index. precision (..., D, D)."""
    return sample_gaussian_precision(precision, generator)


@dataclass(frozen=True)
class BayesGMMFull(BayesMixture):
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
    dims = {"pi": ("component",), "mu": ("component", "coord"), "Lambda": ("component", "coord", "coord2")}
    precision_site = "Lambda"
    family = NWParams
    GibbsState = GibbsState
    batched_log_joint = False

    def __post_init__(self) -> None:
        check_positive(self, ("alpha0", "beta0", "w0"))

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
        mu = m0 + sample_mvn_noise(Lam * self.beta0, generator)
        z = torch.multinomial(g / g.sum(), n, replacement=True, generator=generator)
        X = mu[z] + sample_mvn_noise(Lam[z], generator)
        return {"pi": g / g.sum(), "mu": mu, "Lambda": Lam, "z": z}, as_mixture_data(X, name=f"synthetic {n}x{D}")

    def resimulate(self, state: GibbsState, data: MixtureData, generator: torch.Generator) -> MixtureData:
        """New points given (pi, mu, Lambda): z ~ Cat(pi), x ~ N(mu_z, Lambda_z^-1)."""
        z = torch.multinomial(state.pi, data.shape[0], replacement=True, generator=generator)
        return as_mixture_data(state.mu[z] + sample_mvn_noise(state.Lambda[z], generator), name=data.name)

    def model(self, data: MixtureData) -> None:
        """Pyro model with z enumerated out."""
        import pyro
        import pyro.distributions as dist

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
        import pyro
        import pyro.distributions as dist

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

    def guide(self, data: MixtureData, params: dict[str, torch.Tensor]) -> None:
        """q(pi) = Dir(alpha), q(Lambda_j) = W(W_j, nu_j), q(mu_j | Lambda_j) = N(m_j, (beta_j Lambda_j)^-1)."""
        import pyro
        import pyro.distributions as dist

        p = NWParams.from_guide(params) if "nu_excess" in params else NWParams(**params)
        pyro.sample("pi", dist.Dirichlet(p.alpha))
        with pyro.plate("components", self.K):
            Lam = pyro.sample("Lambda", dist.Wishart(p.nu, covariance_matrix=p.W))
            pyro.sample("mu", dist.MultivariateNormal(p.m, precision_matrix=p.beta[..., None, None] * Lam))

    @property
    def guide_constraints(self) -> dict[str, Any]:
        c = td.constraints
        return {"alpha": c.positive, "m": c.real, "beta": c.positive, "W": c.positive_definite,
                "nu_excess": c.positive}

    # ------------------------------------------------------------------------------------------------
    # Component maths

    def posterior_params(self, data: MixtureData, w: torch.Tensor) -> NWParams:
        """eq. 2 from weights w (n, K)."""
        X = data.X
        D = X.shape[1]
        m0, W0, nu0 = self._prior(D, X)
        N = w.sum(0)
        xbar = (w.T @ X) / N.clamp_min(1e-300)[:, None]
        diff = X[None] - xbar[:, None]  # (K, n, D)
        NS = torch.einsum("kn,kni,knj->kij", w.T, diff, diff)
        m, beta, W, nu = normal_wishart_update(N, xbar, NS, m0, self.beta0, torch.linalg.inv(W0), nu0)
        return NWParams(self.alpha0 + N, m, beta, W, nu)

    def component_log_lik(self, data: MixtureData, mu: torch.Tensor, Lambda: torch.Tensor) -> torch.Tensor:
        """(..., n, K) log N(x_u; mu_j, Lambda_j^-1) for mu (..., K, D), Lambda (..., K, D, D)."""
        diff = data.X[:, None, :] - mu[..., None, :, :]  # (..., n, K, D)
        maha = torch.einsum("...nki,...kij,...nkj->...nk", diff, Lambda, diff)
        D = data.shape[1]
        return 0.5 * torch.logdet(Lambda)[..., None, :] - 0.5 * D * LOG_2PI - 0.5 * maha

    def prior_log_density(self, data: MixtureData, pi: torch.Tensor, mu: torch.Tensor, Lambda: torch.Tensor) -> torch.Tensor:
        """log p(pi) + log p(Lambda) + log p(mu | Lambda) for one draw."""
        D = data.shape[1]
        m0, W0, nu0 = self._prior(D, data.X)
        lp = td.Dirichlet(torch.full_like(pi, self.alpha0)).log_prob(pi)
        lp = lp + td.Wishart(torch.tensor(nu0, dtype=pi.dtype), covariance_matrix=W0).log_prob(Lambda).sum()
        return lp + td.MultivariateNormal(m0, precision_matrix=self.beta0 * Lambda).log_prob(mu).sum()

    def expected_component_log_lik(self, data: MixtureData, p: NWParams) -> torch.Tensor:
        """(n, K) E_q[log N(x_u; mu_j, Lambda_j^-1)] = E[log|Lambda_j|]/2 - D/2 log(2 pi)
        - (D / beta_j + nu_j (x_u - m_j)^T W_j (x_u - m_j)) / 2 (eq. 3 without E[log pi_j])."""
        D = data.shape[1]
        diff = data.X[:, None, :] - p.m[None]
        maha = torch.einsum("nki,kij,nkj->nk", diff, p.W, diff)
        return (0.5 * wishart_expected_logdet(p.W, p.nu)[None] - 0.5 * D * LOG_2PI
                - 0.5 * (D / p.beta[None] + p.nu[None] * maha))

    def component_kl(self, data: MixtureData, p: NWParams) -> torch.Tensor:
        """(K,) KL of the Normal-Wisharts (eq. 4)."""
        m0, W0, nu0 = self._prior(data.shape[1], data.X)
        return normal_wishart_kl(p.m, p.beta, p.W, p.nu, m0, self.beta0, W0, torch.tensor(nu0, dtype=p.nu.dtype))

    def sample_components(self, p: NWParams, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, Lambda) ~ eq. 2: Lambda_j ~ W(W_j, nu_j), then mu_j | Lambda_j ~ N(m_j, (beta_j Lambda_j)^-1)."""
        Lam = sample_wishart(p.W, p.nu, generator)
        return p.m + sample_mvn_noise(p.beta[:, None, None] * Lam, generator), Lam

    def component_conditional(self, p: NWParams) -> Conditional:
        """(mu, Lambda) | z as a Conditional (Normal-Wishart, eq. 2)."""
        def sample(generator):
            mu, Lam = self.sample_components(p, generator)
            return {"mu": mu, "Lambda": Lam}

        def log_prob(v):
            return (td.Wishart(p.nu, covariance_matrix=p.W).log_prob(v["Lambda"]).sum()
                    + td.MultivariateNormal(p.m, precision_matrix=p.beta[:, None, None] * v["Lambda"])
                    .log_prob(v["mu"]).sum())
        return Conditional(("mu", "Lambda"), sample, log_prob)

    def check_mode(self, D: int) -> None:
        if self._nu0(D) <= D:
            raise ValueError(f"EM finds the posterior mode, which needs nu0 > D = {D} (else an empty component's "
                             f"Normal-Wishart density is unbounded); got nu0={self._nu0(D)}")

    def component_mode(self, p: NWParams, D: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of NW(m, beta, W, nu): mu = m, Lambda = (nu - D) W."""
        return normal_wishart_mode(p.m, p.W, p.nu)
