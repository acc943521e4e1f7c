"""Variational Bayesian matrix factorisation (Lim & Teh 2007 style) for models.gaussian_mf.GaussianMF:
the variational family (one type for CAVI and the Pyro guide), closed-form CAVI for both priors, the Pyro guide
of the same family for SVI, and the moment-matched predictive that both report per epoch.

Mean-field family (full K x K covariance per row; independent across rows and blocks):
    q(u_i) = N(ubar_i, Phi_i),  q(v_j) = N(vbar_j, Psi_j)
    BPMF prior:  q(mu_U, Lambda_U) = NW(m_U, beta_U, W_U, nu_U), V likewise
    noise prior: q(alpha) = Ga(a, b)
Expectations used below: E[Lambda] = nu W, E[Lambda mu] = nu W m, E[alpha] = a / b,
E[log |Lambda|] = psi_K(nu / 2) + K log 2 + log |W|, E[log alpha] = psi(a) - log b.

Updates (each the exact maximiser of the ELBO in its block, so the ELBO never decreases):
    q(u_i):  Phi_i^-1 = E[Lambda_U] + E[alpha] sum_{j in Omega_i} (vbar_j vbar_j^T + Psi_j),
             ubar_i   = Phi_i (E[alpha] sum_j (r_ij - offset) vbar_j + E[Lambda_U mu_U]);   V symmetric   (eq. 4)
    E[SSE] = sum_Omega (r - ubar.vbar)^2 + ubar^T Psi_j ubar + vbar^T Phi_i vbar + tr(Phi_i Psi_j)           (eq. 5)
    q(mu_U, Lambda_U): eq. 2 with the scatter sum_i (ubar_i - ū)(ubar_i - ū)^T + Phi_i                     (eq. 6)
    q(alpha): a = a0 + n/2, b = b0 + E[SSE] / 2                                                            (eq. 7)
ELBO = n/2 (E[log alpha] - log 2 pi) - E[alpha] E[SSE] / 2 - KL(q(alpha) || p(alpha))
       + sum over U, V of { fixed prior: -KL(q(F) || N(0, sigma^2 I))
                            BPMF: E[log p(F | mu, Lambda)] + H[q(F)] - KL(q(mu, Lambda) || NW(0, beta0, w0 I, K)) }  (eq. 8)
with E[log N(f_i | mu, Lambda^-1)] = (E[log |Lambda|] - K log 2 pi - K / beta - nu (fbar_i - m)^T W (fbar_i - m)
- nu tr(W C_i)) / 2 and every constant kept.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.distributions as td
from torch.distributions import constraints

from models.conjugate import (LOG_2PI, gamma_expectations, gamma_kl, normal_wishart_kl, sample_gamma,
                              sample_gaussian_precision, sample_wishart, wishart_expected_logdet)
from models.data import RatingData, gram_rhs, partner_sum

__all__ = ["VBState", "GaussianMFVB"]


class VBState(NamedTuple):
    """q's parameters. U_mean (N, K), U_cov (N, K, K), V_mean (M, K), V_cov (M, K, K); with the BPMF prior
    the Normal-Wishart q of (mu_U, Lambda_U): mU (K,), betaU (), WU (K, K), nuU () and the same for V;
    with a noise prior the Gamma q of alpha: a_alpha (), b_alpha (). Absent blocks are None."""

    U_mean: torch.Tensor
    U_cov: torch.Tensor
    V_mean: torch.Tensor
    V_cov: torch.Tensor
    mU: torch.Tensor | None = None
    betaU: torch.Tensor | None = None
    WU: torch.Tensor | None = None
    nuU: torch.Tensor | None = None
    mV: torch.Tensor | None = None
    betaV: torch.Tensor | None = None
    WV: torch.Tensor | None = None
    nuV: torch.Tensor | None = None
    a_alpha: torch.Tensor | None = None
    b_alpha: torch.Tensor | None = None

    def present(self) -> dict[str, torch.Tensor]:
        """The blocks that exist, by name (what a result stores as its variational group)."""
        return {k: v for k, v in self._asdict().items() if v is not None}

    @property
    def has_hyper(self) -> bool:
        """True when q covers the BPMF hyperparameters."""
        return self.mU is not None

    # -- the VariationalFamily protocol ---------------------------------------------------------------
    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draws from q of U (S, N, K), V (S, M, K), the BPMF hyperparameters mu_U (S, K), Lambda_U (S, K, K), ...
        and alpha (S,) where they are part of q."""
        def draw(mean, cov):
            L = torch.linalg.cholesky(cov)
            eps = torch.randn((num_samples,) + mean.shape, generator=generator, dtype=mean.dtype)
            return mean + (L @ eps[..., None])[..., 0]
        out = {"U": draw(self.U_mean, self.U_cov), "V": draw(self.V_mean, self.V_cov)}
        for side in ("U", "V") if self.has_hyper else ():
            m, beta, W, nu = (getattr(self, p + side) for p in ("m", "beta", "W", "nu"))
            Lam = sample_wishart(W.expand(num_samples, -1, -1), nu.expand(num_samples), generator)
            out["mu_" + side] = sample_gaussian_precision(beta * Lam, generator, mean=m)
            out["Lambda_" + side] = Lam
        if self.a_alpha is not None:
            out["alpha"] = sample_gamma(self.a_alpha.expand(num_samples), self.b_alpha.expand(num_samples), generator)
        return out

    def mean(self) -> dict[str, torch.Tensor]:
        out = {"U": self.U_mean, "V": self.V_mean}
        if self.a_alpha is not None:
            out["alpha"] = self.a_alpha / self.b_alpha
        return out

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q of draws (S, ...) of every latent q covers -> (S,) (for PSIS importance weights p / q)."""
        lq = (td.MultivariateNormal(self.U_mean, covariance_matrix=self.U_cov).log_prob(draws["U"]).sum(-1)
              + td.MultivariateNormal(self.V_mean, covariance_matrix=self.V_cov).log_prob(draws["V"]).sum(-1))
        for side in ("U", "V") if self.has_hyper else ():
            m, beta, W, nu = (getattr(self, p + side) for p in ("m", "beta", "W", "nu"))
            Lam = draws["Lambda_" + side]
            lq = lq + td.Wishart(nu, covariance_matrix=W).log_prob(Lam)
            lq = lq + td.MultivariateNormal(m, precision_matrix=beta * Lam).log_prob(draws["mu_" + side])
        if self.a_alpha is not None:
            lq = lq + td.Gamma(self.a_alpha, self.b_alpha).log_prob(draws["alpha"])
        return lq

    def to_guide(self) -> dict[str, torch.Tensor]:
        """The SVI guide's parameters (fixed prior): means and Cholesky factors of the row covariances, and q(alpha)."""
        if self.has_hyper:
            raise ValueError("the SVI guide covers the fixed prior only; this q has BPMF hyperparameter blocks")
        out = {"U_mean": self.U_mean, "U_tril": torch.linalg.cholesky(self.U_cov),
               "V_mean": self.V_mean, "V_tril": torch.linalg.cholesky(self.V_cov)}
        if self.a_alpha is not None:
            out.update(a_alpha=self.a_alpha, b_alpha=self.b_alpha)
        return out

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> VBState:
        def cov(L):
            return L @ L.transpose(-1, -2)
        params = {k: torch.as_tensor(v) for k, v in params.items()}
        return cls(params["U_mean"], cov(params["U_tril"]), params["V_mean"], cov(params["V_tril"]),
                   a_alpha=params.get("a_alpha"), b_alpha=params.get("b_alpha"))

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self.present()

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> VBState:
        return cls(**{k: torch.as_tensor(v) for k, v in params.items()})


class VBCaviState(NamedTuple):
    """What the CAVI driver carries: ``params`` (a VBState)."""

    params: VBState


class GaussianMFVB:
    """CAVI and SVI hooks of GaussianMF (a mixin: it reads K, prior, alpha, sigma_U, sigma_V, beta0, w0,
    noise_prior and offset() from the model)."""

    # ------------------------------------------------------------------------------------------------
    # expectations under q

    def _E_prior(self, st: VBState, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """E[Lambda] (K, K) and E[Lambda mu] (K,) of one side's prior."""
        dt = st.U_mean.dtype
        if self.prior == "fixed":
            sigma = self.sigma_U if side == "U" else self.sigma_V
            return torch.eye(self.K, dtype=dt) / sigma ** 2, torch.zeros(self.K, dtype=dt)
        m, W, nu = getattr(st, "m" + side), getattr(st, "W" + side), getattr(st, "nu" + side)
        E_Lam = nu * W
        return E_Lam, E_Lam @ m

    def _E_alpha(self, st: VBState) -> tuple[torch.Tensor, torch.Tensor]:
        """E[alpha] and E[log alpha]."""
        if st.a_alpha is None:
            a = torch.tensor(self.alpha, dtype=st.U_mean.dtype)
            return a, torch.log(a)
        return gamma_expectations(st.a_alpha, st.b_alpha)

    def _moment_sums(self, data: RatingData, side: str, mean: torch.Tensor, cov: torch.Tensor,
                     offset: float | None = None):
        """sum_{j in Omega_i} fbar_j fbar_j^T (R, K, K), sum_j C_j (R, K, K), sum_j (r_ij - offset) fbar_j (R, K),
        with f the partners of each row of ``side`` and C their q-covariances. ``offset``: default the model's
        offset of ``data`` (stochastic VI passes the offset of all the data for a minibatch)."""
        gram, rhs = gram_rhs(data, side, mean, data.values - (self.offset(data) if offset is None else offset))
        return gram, partner_sum(data, side, cov), rhs

    def expected_sse(self, data: RatingData, st: VBState, offset: float | None = None) -> torch.Tensor:
        """E_q[sum_Omega (r_ij - offset - u_i . v_j)^2] (eq. 5), through per-row sums (no (n, K, K) array).
        ``offset``: as in :meth:`_moment_sums`."""
        u, v = st.U_mean[data.rows], st.V_mean[data.cols]
        r = data.values - (self.offset(data) if offset is None else offset)
        vv_sum, psi_sum, _ = self._moment_sums(data, "U", st.V_mean, st.V_cov, offset)
        quad = torch.einsum("ni,nij,nj->", st.U_mean, psi_sum, st.U_mean) + (st.U_cov * (vv_sum + psi_sum)).sum()
        return ((r - (u * v).sum(-1)) ** 2).sum() + quad

    # ------------------------------------------------------------------------------------------------
    # block updates (eqs. 4, 6, 7)

    def vb_update_factors(self, data: RatingData, st: VBState, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. 4 for every row of ``side`` at once: (means (R, K), covariances (R, K, K))."""
        other_mean, other_cov = (st.V_mean, st.V_cov) if side == "U" else (st.U_mean, st.U_cov)
        gram, cov_sum, rhs = self._moment_sums(data, side, other_mean, other_cov)
        E_Lam, E_Lam_mu = self._E_prior(st, side)
        E_alpha, _ = self._E_alpha(st)
        cov = torch.cholesky_inverse(torch.linalg.cholesky(E_Lam[None] + E_alpha * (gram + cov_sum)))
        return (cov @ (E_alpha * rhs + E_Lam_mu)[..., None])[..., 0], cov

    def vb_update_hyper(self, mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """eq. 6: the Normal-Wishart q (m, beta, W, nu) of one side's (mu, Lambda) given q(F)."""
        m, beta, W, nu = self.hyper_conditional(mean, extra_scatter=cov.sum(0))
        dt = mean.dtype
        return m, torch.tensor(float(beta), dtype=dt), W, torch.tensor(float(nu), dtype=dt)

    def vb_update_noise(self, data: RatingData, st: VBState) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. 7: q(alpha) = Ga(a0 + n/2, b0 + E[SSE]/2)."""
        a0, b0 = self.noise_prior
        dt = st.U_mean.dtype
        return torch.tensor(a0 + 0.5 * len(data), dtype=dt), b0 + 0.5 * self.expected_sse(data, st)

    def _with_hyper(self, st: VBState, side: str) -> VBState:
        if self.prior != "bpmf":
            return st
        mean, cov = (st.U_mean, st.U_cov) if side == "U" else (st.V_mean, st.V_cov)
        return st._replace(**dict(zip([p + side for p in ("m", "beta", "W", "nu")], self.vb_update_hyper(mean, cov))))

    # ------------------------------------------------------------------------------------------------
    # the ELBO (eq. 8)

    def _kl_nw(self, m, beta, W, nu) -> torch.Tensor:
        """KL(NW(m, beta, W, nu) || NW(0, beta0, w0 I, K))."""
        K, dt = self.K, m.dtype
        return normal_wishart_kl(m, beta, W, nu, torch.zeros(K, dtype=dt), self.beta0, self.w0 * torch.eye(K, dtype=dt),
                                 torch.tensor(float(K), dtype=dt))

    def _factor_terms(self, st: VBState, side: str) -> torch.Tensor:
        """E[log p(F | prior)] + H[q(F)] (- KL of the hyperparameters for BPMF)."""
        K = self.K
        mean, cov = (st.U_mean, st.U_cov) if side == "U" else (st.V_mean, st.V_cov)
        R = mean.shape[0]
        logdet = 2 * torch.log(torch.diagonal(torch.linalg.cholesky(cov), dim1=-2, dim2=-1)).sum()
        entropy = 0.5 * (logdet + R * K * (1 + LOG_2PI))
        if self.prior == "fixed":
            s2 = (self.sigma_U if side == "U" else self.sigma_V) ** 2
            tr = torch.diagonal(cov, dim1=-2, dim2=-1).sum() + (mean ** 2).sum()
            return -0.5 * (R * K * (LOG_2PI + math.log(s2)) + tr / s2) + entropy
        m, beta, W, nu = (getattr(st, p + side) for p in ("m", "beta", "W", "nu"))
        D = mean - m
        quad = nu * (((D @ W) * D).sum() + (W[None] * cov).sum())
        e_log_p = 0.5 * (R * (wishart_expected_logdet(W, nu) - K * LOG_2PI - K / beta) - quad)
        return e_log_p + entropy - self._kl_nw(m, beta, W, nu)

    def vb_elbo(self, data: RatingData, st: VBState) -> torch.Tensor:
        """The full ELBO (eq. 8), every constant included."""
        return self.elbo_from_sse(st, len(data), self.expected_sse(data, st))

    def elbo_from_sse(self, st: VBState, n: int, sse: torch.Tensor) -> torch.Tensor:
        """The ELBO (eq. 8) given the number of ratings n and E_q[SSE] (eq. 5) at q = ``st``."""
        E_alpha, E_log_alpha = self._E_alpha(st)
        elbo = 0.5 * n * (E_log_alpha - LOG_2PI) - 0.5 * E_alpha * sse
        if st.a_alpha is not None:
            elbo = elbo - gamma_kl(st.a_alpha, st.b_alpha, *self.noise_prior)
        return elbo + self._factor_terms(st, "U") + self._factor_terms(st, "V")

    # ------------------------------------------------------------------------------------------------
    # CAVI driver hooks (the loop lives in inference.cavi)

    family = VBState
    cavi_options = {}  # no model-specific CAVI options

    @property
    def cavi_blocks(self) -> tuple[str, ...]:
        """The block updates of one sweep, in order: q(mu_U, Lambda_U) (BPMF), q(U), q(mu_V, Lambda_V), q(V), and
        q(alpha) when alpha has a prior."""
        hyper = self.prior == "bpmf"
        return ((("hyper_U",) if hyper else ()) + ("U",) + (("hyper_V",) if hyper else ()) + ("V",)
                + (("alpha",) if self.noise_prior is not None else ()))

    def cavi_init(self, data: RatingData, generator: torch.Generator) -> VBCaviState:
        """q(U), q(V): means 0.1 N(0, 1), covariances 0.01 I (the Gibbs start); then q(hyper) from them (eq. 6)
        and q(alpha) with E[alpha] = alpha and shape a0 + n/2."""
        return VBCaviState(self.initial_params(data.shape, len(data), data.dtype, generator))

    def initial_params(self, shape: tuple[int, int], n: int, dt: torch.dtype, generator: torch.Generator) -> VBState:
        """The q of :meth:`cavi_init` for an N x M matrix with n ratings."""
        N, M = shape
        eye = torch.eye(self.K, dtype=dt)
        st = VBState(0.1 * torch.randn(N, self.K, generator=generator, dtype=dt), 0.01 * eye.expand(N, -1, -1).clone(),
                     0.1 * torch.randn(M, self.K, generator=generator, dtype=dt), 0.01 * eye.expand(M, -1, -1).clone())
        st = self._with_hyper(self._with_hyper(st, "U"), "V")
        if self.noise_prior is not None:
            a = torch.tensor(self.noise_prior[0] + 0.5 * n, dtype=dt)
            st = st._replace(a_alpha=a, b_alpha=a / self.alpha)
        return st

    def cavi_initial_elbo(self, data: RatingData, state: VBCaviState) -> torch.Tensor:
        return self.vb_elbo(data, state.params)

    def elbo(self, data: RatingData, q: VBState) -> torch.Tensor:
        """The full ELBO (eq. 8) at q."""
        return self.vb_elbo(data, q)

    def cavi_state_elbo(self, data: RatingData, state: VBCaviState) -> torch.Tensor:
        return self.vb_elbo(data, state.params)

    def cavi_block(self, data: RatingData, state: VBCaviState, block: str) -> VBCaviState:
        """One block update: "hyper_U"/"hyper_V" (eq. 6), "U"/"V" (eq. 4) or "alpha" (eq. 7)."""
        st = state.params
        if block in ("hyper_U", "hyper_V"):
            return VBCaviState(self._with_hyper(st, block[-1]))
        if block in ("U", "V"):
            return VBCaviState(st._replace(**dict(zip((f"{block}_mean", f"{block}_cov"),
                                                       self.vb_update_factors(data, st, block)))))
        if block == "alpha" and self.noise_prior is not None:
            return VBCaviState(st._replace(**dict(zip(("a_alpha", "b_alpha"), self.vb_update_noise(data, st)))))
        raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")

    def cavi_update(self, data: RatingData, state: VBCaviState) -> tuple[VBCaviState, torch.Tensor]:
        """One sweep through ``cavi_blocks`` (eqs. 6, 4, 6, 4, 7); the ELBO (eq. 8) after it."""
        for block in self.cavi_blocks:
            state = self.cavi_block(data, state, block)
        return state, self.vb_elbo(data, state.params)

    def objective_attrs(self, data: RatingData, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo), "elbo_per_rating": float(elbo) / len(data)}

    def predictive_moments(self, params: VBState, rows: torch.Tensor, cols: torch.Tensor, offset: float):
        """Mean and variance of r_ij under q (moment-matched): mean offset + ubar.vbar; variance
        ubar^T Psi ubar + vbar^T Phi vbar + tr(Phi Psi) + 1 / E[alpha]."""
        u, v = params.U_mean[rows], params.V_mean[cols]
        Phi, Psi = params.U_cov[rows], params.V_cov[cols]
        var = (torch.einsum("ni,nij,nj->n", u, Psi, u) + torch.einsum("ni,nij,nj->n", v, Phi, v)
               + (Phi * Psi).sum((-1, -2)))
        E_alpha, _ = self._E_alpha(params)
        return offset + (u * v).sum(-1), var + 1.0 / E_alpha

    def test_nll(self, train: RatingData, params: VBState, test: RatingData) -> float:
        """Negative log predictive density per held-out rating under the moment-matched Gaussian predictive."""
        mean, var = self.predictive_moments(params, test.rows, test.cols, self.offset(train))
        return float(-(td.Normal(mean, var.sqrt()).log_prob(test.values)).mean())

    # ------------------------------------------------------------------------------------------------
    # SVI: the Pyro guide of the same family (fixed prior; q(alpha) Gamma when alpha has a prior)

    def _check_svi(self) -> None:
        if self.prior != "fixed":
            raise ValueError("SVI is implemented for prior='fixed' (the course's model); use CAVI or Gibbs for BPMF")

    @property
    def guide_constraints(self) -> dict[str, Any]:
        c = {"U_mean": constraints.real, "U_tril": constraints.lower_cholesky,
             "V_mean": constraints.real, "V_tril": constraints.lower_cholesky}
        if self.noise_prior is not None:
            c.update(a_alpha=constraints.positive, b_alpha=constraints.positive)
        return c

    svi_elbo = "meanfield"

    def guide_init(self, data: RatingData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The CAVI start, with covariances through Cholesky factors."""
        self._check_svi()
        return self.cavi_init(data, generator).params.to_guide()

    def guide(self, data: RatingData, params: dict[str, torch.Tensor], subsample_size=None) -> None:
        """q(U) q(V) (rows independent, full covariance) and q(alpha) = Ga(a, b) when alpha has a prior; params from
        VBState.to_guide."""
        import pyro
        import pyro.distributions as dist

        self._check_svi()
        pyro.sample("U", dist.MultivariateNormal(params["U_mean"], scale_tril=params["U_tril"]).to_event(1))
        pyro.sample("V", dist.MultivariateNormal(params["V_mean"], scale_tril=params["V_tril"]).to_event(1))
        if self.noise_prior is not None:
            pyro.sample("alpha", dist.Gamma(params["a_alpha"], params["b_alpha"]))
