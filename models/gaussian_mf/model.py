"""Gaussian Bayesian matrix factorisation for ratings, with fixed isotropic priors (the course's model) or
the hierarchical BPMF prior of Salakhutdinov & Mnih (2008).

Notation:
    N rows (users), M columns (items), K factors; Omega the observed (i, j); n = |Omega|.
    r_ij ~ N(offset + u_i . v_j, 1 / alpha)  for (i, j) in Omega    (alpha: noise precision; offset: global mean)
    fixed prior:  u_i ~ N(0, sigma_U^2 I),  v_j ~ N(0, sigma_V^2 I)
    BPMF prior:   u_i ~ N(mu_U, Lambda_U^-1),  (mu_U, Lambda_U) ~ NW(mu0 = 0, beta0, W0 = w0 I, nu0 = K); V likewise.
Row conditionals (batched over all rows at once; eq. 1):
    P_i = Lambda_U + alpha sum_{j in Omega_i} v_j v_j^T,   u_i | . ~ N(P_i^-1 (alpha sum_j (r_ij - offset) v_j + Lambda_U mu_U), P_i^-1)
Normal-Wishart hyperparameter conditional (eq. 2), with ubar, S the mean and covariance of the N rows of U:
    beta* = beta0 + N, nu* = nu0 + N, mu* = (beta0 mu0 + N ubar) / beta*,
    W*^-1 = W0^-1 + N S + beta0 N / beta* (ubar - mu0)(ubar - mu0)^T;   Lambda_U ~ W(W*, nu*), mu_U ~ N(mu*, (beta* Lambda_U)^-1)
The factors are not identifiable (rotations); compare predictions u_i . v_j, never U or V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributions as td

from models.conjugate import (LOG_2PI, normal_wishart_mode, normal_wishart_update, sample_gamma,
                              sample_gaussian_precision, sample_wishart, wishart_log_pdf_isotropic)
from models.data import RatingData, as_rating_data, gram_rhs, sample_indices
from models.gaussian_mf.stochastic import GaussianMFStochastic
from models.gaussian_mf.vb import GaussianMFVB
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["GaussianMF", "GibbsState", "solve_rows"]


class GibbsState(NamedTuple):
    """U (N, K), V (M, K), the BPMF hyperparameters (mu_U (K,), Lambda_U (K, K), mu_V, Lambda_V) and the noise
    precision alpha (); with the fixed prior the hyperparameters stay at 0 and I / sigma^2, and alpha stays
    fixed without a noise prior."""

    U: torch.Tensor
    V: torch.Tensor
    mu_U: torch.Tensor
    Lambda_U: torch.Tensor
    mu_V: torch.Tensor
    Lambda_V: torch.Tensor
    alpha: torch.Tensor


def solve_rows(P: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_i = P_i^-1 b_i for every row at once (batched Cholesky). P (R, K, K), b (R, K)."""
    return torch.cholesky_solve(b[..., None], torch.linalg.cholesky(P))[..., 0]


@dataclass(frozen=True)
class GaussianMF(GaussianMFVB, GaussianMFStochastic):
    """Gaussian matrix factorisation (hyperparameters only).

    Args:
        K: factors. alpha: noise precision 1/sigma^2 (the starting value when ``noise_prior`` is set).
        prior: "bpmf" or "fixed". noise_prior: (a, b) puts alpha ~ Ga(a, b) (shape, rate) and samples it:
        alpha | . ~ Ga(a + n/2, b + SSE/2) (eq. 3).
        sigma_U, sigma_V: prior sds of the fixed prior. beta0, w0: Normal-Wishart hyperprior (W0 = w0 I,
        nu0 = K, mu0 = 0). center: subtract the training mean rating (global offset) before factorising.
    """

    K: int
    alpha: float = 2.0
    prior: str = "bpmf"
    sigma_U: float = 1.0
    sigma_V: float = 1.0
    beta0: float = 2.0
    w0: float = 1.0
    center: bool = True
    noise_prior: tuple[float, float] | None = None

    name = "gaussian-mf"
    sites = ("U", "V")
    max_plate_nesting = None
    dims = {"U": ("row", "factor"), "V": ("col", "factor")}

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        if self.prior not in ("bpmf", "fixed"):
            raise ValueError(f"prior must be 'bpmf' or 'fixed', got {self.prior!r}")
        if self.noise_prior is not None:
            if (len(self.noise_prior) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in self.noise_prior)):
                raise ValueError(f"noise_prior must be (shape, rate) with both > 0, got {self.noise_prior!r}")
            object.__setattr__(self, "noise_prior", tuple(float(v) for v in self.noise_prior))
        for f in ("alpha", "sigma_U", "sigma_V", "beta0", "w0"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f} must be a positive finite number, got {v!r}")

    def hyperparameters(self) -> dict[str, Any]:
        return {"K": self.K, "alpha": self.alpha, "prior": self.prior, "sigma_U": self.sigma_U,
                "sigma_V": self.sigma_V, "beta0": self.beta0, "w0": self.w0, "center": self.center,
                "noise_prior": list(self.noise_prior) if self.noise_prior else None}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> RatingData:
        return as_rating_data(data, dtype=dtype, device=device)

    def offset(self, data: RatingData) -> float:
        return float(data.values.mean()) if self.center else 0.0

    # ------------------------------------------------------------------------------------------------
    # Pyro model (fixed prior: the course's model; BPMF with the Normal-Wishart hyperpriors)

    def model(self, data: RatingData, subsample_size: int | None = None) -> None:
        """r_ij ~ N(offset + u_i . v_j, 1 / alpha) over the observed entries; ``subsample_size`` subsamples the
        ratings plate (minibatch SVI: the likelihood is scaled by n / batch)."""
        import pyro
        import pyro.distributions as dist

        N, M = data.shape
        K, dt = self.K, data.dtype
        eye = torch.eye(K, dtype=dt)
        if self.prior == "fixed":
            # one K-dimensional Gaussian per row, so that TraceMeanField_ELBO's KL against the guide is analytic
            U = pyro.sample("U", dist.MultivariateNormal(torch.zeros(N, K, dtype=dt), scale_tril=self.sigma_U * eye)
                            .to_event(1))
            V = pyro.sample("V", dist.MultivariateNormal(torch.zeros(M, K, dtype=dt), scale_tril=self.sigma_V * eye)
                            .to_event(1))
        else:
            nu0 = torch.tensor(float(K), dtype=dt)
            factors = {}
            for side, n in (("U", N), ("V", M)):
                Lam = pyro.sample(f"Lambda_{side}", dist.Wishart(nu0, covariance_matrix=self.w0 * eye))
                mu = pyro.sample(f"mu_{side}", dist.MultivariateNormal(torch.zeros(K, dtype=dt),
                                                                       precision_matrix=self.beta0 * Lam))
                with pyro.plate(f"{side}_rows", n):
                    factors[side] = pyro.sample(side, dist.MultivariateNormal(mu, precision_matrix=Lam))
            U, V = factors["U"], factors["V"]
        if self.noise_prior is not None:
            alpha = pyro.sample("alpha", dist.Gamma(torch.tensor(self.noise_prior[0], dtype=dt),
                                                    torch.tensor(self.noise_prior[1], dtype=dt)))
        else:
            alpha = torch.tensor(self.alpha, dtype=dt)
        with pyro.plate("ratings", len(data), subsample_size=subsample_size) as idx:
            pred = self.offset(data) + (U[data.rows[idx]] * V[data.cols[idx]]).sum(-1)
            pyro.sample("r", dist.Normal(pred, 1.0 / torch.sqrt(alpha)), obs=data.values[idx])

    # ------------------------------------------------------------------------------------------------
    # Conditionals (eqs. 1-2)

    def row_conditional(self, data: RatingData, F_other: torch.Tensor, mu: torch.Tensor, Lam: torch.Tensor,
                        side: str, alpha: float | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Precision P (R, K, K) and linear term b (R, K) of the Gaussian conditional of every row of U
        (side="U") or V (side="V"): eq. 1, mean = P^-1 b."""
        alpha = self.alpha if alpha is None else alpha
        gram, rhs = gram_rhs(data, side, F_other, data.values - self.offset(data))
        P = Lam[None] + alpha * gram
        b = alpha * rhs + (Lam @ mu)[None]
        return P, b

    def hyper_conditional(self, F: torch.Tensor, extra_scatter: torch.Tensor | None = None):
        """Normal-Wishart parameters (mu*, beta*, W*, nu*) of (mu, Lambda) | F (eq. 2). F (R, K).
        ``extra_scatter`` (K, K) is added to the scatter N S (CAVI passes sum_i Cov_q(f_i), eq. 6)."""
        R, K = F.shape
        fbar = F.mean(0)
        NS = (F - fbar).T @ (F - fbar) + (0 if extra_scatter is None else extra_scatter)
        m, beta, W, nu = normal_wishart_update(float(R), fbar, NS, torch.zeros(K, dtype=F.dtype), self.beta0,
                                               torch.eye(K, dtype=F.dtype) / self.w0, float(K))
        return m, float(beta), W, float(nu)

    def _fixed_hyper(self, sigma: float, dt) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.K, dtype=dt), torch.eye(self.K, dtype=dt) / sigma ** 2

    # ------------------------------------------------------------------------------------------------
    # Simulation from the model (SBC and Geweke tests)

    def simulate(self, size: tuple[int, int, float], generator: torch.Generator) -> tuple[GibbsState, RatingData]:
        """A prior draw as a Gibbs state, and ratings at a random ``size`` = (N, M, observed fraction) of the cells.
        Needs center=False: a data-dependent offset is not part of the generative model."""
        if self.center:
            raise ValueError("simulate: set center=False (the training-mean offset is not part of the generative model)")
        N, M, frac = size
        dt = torch.float64
        mask = torch.rand(N, M, generator=generator, dtype=dt) < frac
        mask[0, 0] = True
        rows, cols = torch.nonzero(mask, as_tuple=True)  # row-major
        hyper = []
        for side, n, sigma in (("U", N, self.sigma_U), ("V", M, self.sigma_V)):
            if self.prior == "bpmf":
                Lam = sample_wishart(self.w0 * torch.eye(self.K, dtype=dt)[None], torch.tensor([float(self.K)], dtype=dt),
                                     generator)[0]
                mu = sample_gaussian_precision(self.beta0 * Lam, generator, mean=torch.zeros(self.K, dtype=dt))
            else:
                mu, Lam = self._fixed_hyper(sigma, dt)
            F = sample_gaussian_precision(Lam, generator, mean=mu.expand(n, -1))
            hyper.append((F, mu, Lam))
        (U, mu_U, Lam_U), (V, mu_V, Lam_V) = hyper
        alpha = (sample_gamma(torch.tensor(self.noise_prior[0], dtype=dt), torch.tensor(self.noise_prior[1], dtype=dt),
                              generator) if self.noise_prior is not None else torch.tensor(self.alpha, dtype=dt))
        state = GibbsState(U, V, mu_U, Lam_U, mu_V, Lam_V, alpha)
        skeleton = RatingData(rows, cols, torch.zeros(len(rows), dtype=dt), (N, M), f"synthetic {N}x{M}")
        return state, self.resimulate(state, skeleton, generator)

    def resimulate(self, state: GibbsState, data: RatingData, generator: torch.Generator) -> RatingData:
        """New ratings at the same cells: r_ij ~ N(u_i . v_j, 1 / alpha)."""
        pred = (state.U[data.rows] * state.V[data.cols]).sum(-1)
        noise = torch.randn(len(data), generator=generator, dtype=pred.dtype) / torch.sqrt(state.alpha)
        return data.with_values(pred + noise)

    # ------------------------------------------------------------------------------------------------
    # Gibbs

    def gibbs_init(self, data: RatingData, generator: torch.Generator) -> GibbsState:
        N, M = data.shape
        dt = data.dtype
        U = 0.1 * torch.randn(N, self.K, generator=generator, dtype=dt)
        V = 0.1 * torch.randn(M, self.K, generator=generator, dtype=dt)
        mu_U, Lam_U = self._fixed_hyper(self.sigma_U, dt)
        mu_V, Lam_V = self._fixed_hyper(self.sigma_V, dt)
        return GibbsState(U, V, mu_U, Lam_U, mu_V, Lam_V, torch.tensor(self.alpha, dtype=dt))

    def _sample_hyper(self, F: torch.Tensor, generator: torch.Generator):
        """(mu, Lambda) ~ eq. 2: Lambda ~ W(W*, nu*), then mu | Lambda ~ N(mu*, (beta* Lambda)^-1)."""
        m, beta, W, nu = self.hyper_conditional(F)
        Lam = sample_wishart(W[None], torch.tensor([float(nu)], dtype=F.dtype), generator)[0]
        return sample_gaussian_precision(beta * Lam, generator, mean=m), Lam

    def gibbs_sweep(self, data: RatingData, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """BPMF: (mu_U, Lambda_U) | U; U | V, hyper; (mu_V, Lambda_V) | V; V | U, hyper; then alpha | rest when
        it has a prior. Fixed prior: U, V (and alpha) only."""
        U, V, mu_U, Lam_U, mu_V, Lam_V, alpha = state
        if self.prior == "bpmf":
            mu_U, Lam_U = self._sample_hyper(U, generator)                                   # eq. 2
        P, b = self.row_conditional(data, V, mu_U, Lam_U, "U", alpha)                         # eq. 1
        U = sample_gaussian_precision(P, generator, linear=b)
        if self.prior == "bpmf":
            mu_V, Lam_V = self._sample_hyper(V, generator)
        P, b = self.row_conditional(data, U, mu_V, Lam_V, "V", alpha)
        V = sample_gaussian_precision(P, generator, linear=b)
        if self.noise_prior is not None:                                                      # eq. 3
            a, b = self.noise_conditional(data, U, V)
            alpha = sample_gamma(a, b, generator)
        return GibbsState(U, V, mu_U, Lam_U, mu_V, Lam_V, alpha)

    # ------------------------------------------------------------------------------------------------
    # EM / MAP (the loop lives in inference.em). There are no latent allocations here: the posterior mode is found by
    # iterated conditional modes, each block set to the mode of its complete conditional (for U and V alternating
    # ridge regressions, i.e. ALS with the prior as the penalty); every block update maximises the log joint in that
    # block, so it never decreases.

    def em_init(self, data: RatingData, generator: torch.Generator) -> GibbsState:
        """Small random factors (the Gibbs start); hyperparameters at the fixed prior, alpha at its starting value."""
        return self.gibbs_init(data, generator)

    def em_update(self, data: RatingData, state: GibbsState) -> GibbsState:
        """BPMF: (mu_U, Lambda_U) = the joint mode of eq. 2, (mu*, (nu* - K) W*); U = P^-1 b, the mode (= mean) of
        eq. 1; likewise for V; alpha = (a + n/2 - 1) / (b + SSE/2), the mode of eq. 3, when it has a prior."""
        U, V, mu_U, Lam_U, mu_V, Lam_V, alpha = state
        if self.prior == "bpmf":
            mu_U, Lam_U = self.hyper_mode(U)                                                   # eq. 2 mode
        U = solve_rows(*self.row_conditional(data, V, mu_U, Lam_U, "U", alpha))               # eq. 1 mode
        if self.prior == "bpmf":
            mu_V, Lam_V = self.hyper_mode(V)
        V = solve_rows(*self.row_conditional(data, U, mu_V, Lam_V, "V", alpha))
        if self.noise_prior is not None:
            a, b = self.noise_conditional(data, U, V)
            alpha = (a - 1) / b                                                               # eq. 3 mode
        return GibbsState(U, V, mu_U, Lam_U, mu_V, Lam_V, alpha)

    def hyper_mode(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of the Normal-Wishart conditional (eq. 2): mu = mu*, Lambda = (nu* - K) W*."""
        m, _, W, nu = self.hyper_conditional(F)
        return normal_wishart_mode(m, W, nu)

    def noise_conditional(self, data: RatingData, U: torch.Tensor, V: torch.Tensor):
        """Ga(a + n/2, b + SSE/2) of alpha | U, V, R (eq. 3)."""
        resid = data.values - self.offset(data) - (U[data.rows] * V[data.cols]).sum(-1)
        a, b = self.noise_prior
        return (torch.tensor(a + 0.5 * len(data), dtype=U.dtype), b + 0.5 * (resid ** 2).sum())

    # ------------------------------------------------------------------------------------------------
    # The conditionals as distributions, for checking them against the Pyro model (inference.workflows.checks)

    def conditional_model(self, data: RatingData) -> None:
        self.model(data)

    def conditional_values(self, data: RatingData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every latent site of the Pyro model at a state a few Gibbs sweeps from the start."""
        s = warm_gibbs_state(self, data, generator)
        values = {"U": s.U, "V": s.V}
        if self.prior == "bpmf":
            values.update(mu_U=s.mu_U, Lambda_U=s.Lambda_U, mu_V=s.mu_V, Lambda_V=s.Lambda_V)
        if self.noise_prior is not None:
            values["alpha"] = s.alpha
        return values

    def complete_conditionals(self, data: RatingData, values: dict[str, torch.Tensor]) -> dict[str, Conditional]:
        """Eq. 1 for U and V (every row), eq. 2 for (mu, Lambda) of each side (BPMF), eq. 3 for alpha (noise prior)."""
        dt = data.dtype
        alpha = values.get("alpha", torch.tensor(self.alpha, dtype=dt))
        out = {}
        for side, other, sigma in (("U", "V", self.sigma_U), ("V", "U", self.sigma_V)):
            if self.prior == "bpmf":
                mu, Lam = values[f"mu_{side}"], values[f"Lambda_{side}"]
                out[f"hyper_{side}"] = self._hyper_conditional_dist(values[side], side)
            else:
                mu, Lam = self._fixed_hyper(sigma, dt)
            P, b = self.row_conditional(data, values[other], mu, Lam, side, alpha)
            out[side] = Conditional.of(side, td.MultivariateNormal(solve_rows(P, b), precision_matrix=P))
        if self.noise_prior is not None:
            out["alpha"] = Conditional.of("alpha", td.Gamma(*self.noise_conditional(data, values["U"], values["V"])))
        return out

    def _hyper_conditional_dist(self, F: torch.Tensor, side: str) -> Conditional:
        m, beta, W, nu = self.hyper_conditional(F)
        mu_name, lam_name = f"mu_{side}", f"Lambda_{side}"

        def sample(generator):
            Lam = sample_wishart(W[None], torch.tensor([float(nu)], dtype=F.dtype), generator)[0]
            return {mu_name: sample_gaussian_precision(beta * Lam, generator, mean=m), lam_name: Lam}

        def log_prob(v):
            return (td.Wishart(torch.tensor(float(nu), dtype=F.dtype), covariance_matrix=W).log_prob(v[lam_name])
                    + td.MultivariateNormal(m, precision_matrix=beta * v[lam_name]).log_prob(v[mu_name]))
        return Conditional((mu_name, lam_name), sample, log_prob)

    def log_joint(self, data: RatingData, U, V, mu_U=None, Lambda_U=None, mu_V=None, Lambda_V=None,
                  alpha=None) -> torch.Tensor:
        """log p(U, V, [hyper], [alpha], R) with every constant; batched over leading dims of U."""
        if U.dim() > 2:
            lead = U.shape[:-2]
            hyper = [mu_U, Lambda_U, mu_V, Lambda_V] if self.prior == "bpmf" else [None] * 4
            noise = [alpha] if self.noise_prior is not None else [None]
            args = [U, V] + hyper + noise
            flat = [a.reshape(-1, *a.shape[len(lead):]) if a is not None else [None] * int(np.prod(lead))
                    for a in args]
            return torch.stack([self.log_joint(data, *v) for v in zip(*flat)]).reshape(lead)
        dt = U.dtype
        pred = self.offset(data) + (U[data.rows] * V[data.cols]).sum(-1)
        if self.noise_prior is not None:
            alpha = torch.as_tensor(alpha, dtype=dt)
            noise_lp = td.Gamma(torch.tensor(self.noise_prior[0], dtype=dt),
                                  torch.tensor(self.noise_prior[1], dtype=dt)).log_prob(alpha)
        else:
            alpha, noise_lp = torch.tensor(self.alpha, dtype=dt), 0.0
        lik = td.Normal(pred, 1.0 / torch.sqrt(alpha)).log_prob(data.values).sum() + noise_lp
        if self.prior == "fixed":
            zero = torch.zeros((), dtype=dt)  # float64 parameters (python floats would make float32 ones)
            return (lik + td.Normal(zero, self.sigma_U).log_prob(U).sum()
                    + td.Normal(zero, self.sigma_V).log_prob(V).sum())
        lp = lik
        for F, mu, Lam in ((U, mu_U, Lambda_U), (V, mu_V, Lambda_V)):
            logdet = torch.logdet(Lam)
            lp = lp + wishart_log_pdf_isotropic(Lam, self.w0, float(self.K))  # W(W0 = w0 I, nu0 = K)
            lp = lp + 0.5 * (self.K * math.log(self.beta0) + logdet - self.K * LOG_2PI - self.beta0 * mu @ Lam @ mu)
            D = F - mu
            lp = lp + 0.5 * (F.shape[0] * (logdet - self.K * LOG_2PI) - ((D @ Lam) * D).sum())
        return lp

    # ------------------------------------------------------------------------------------------------
    # Identifiable quantities

    invariant_dims = {"pred": ("cell",), "log_joint": ()}

    def invariant_cells(self, data: RatingData, max_cells: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed cells whose predictions are tracked (the first max_cells of a fixed permutation)."""
        pick = sample_indices(len(data), max_cells, torch.Generator().manual_seed(0))
        return data.rows[pick], data.cols[pick]

    def invariants(self, data: RatingData, U, V, **hyper) -> dict[str, torch.Tensor]:
        r, c = self.invariant_cells(data)
        pred = self.offset(data) + (U[..., r, :] * V[..., c, :]).sum(-1)
        args = [hyper.get(k) for k in ("mu_U", "Lambda_U", "mu_V", "Lambda_V", "alpha")]
        return {"pred": pred, "log_joint": self.log_joint(data, U, V, *args)}

    def pointwise_log_lik(self, data: RatingData, U: torch.Tensor, V: torch.Tensor, alpha=None, **_) -> dict[str, torch.Tensor]:
        """log N(r_ij; offset + u_i . v_j, 1 / alpha) per observed rating: {"r": (..., n)}."""
        U, V = torch.as_tensor(U), torch.as_tensor(V)
        pred = self.offset(data) + (U[..., data.rows, :] * V[..., data.cols, :]).sum(-1)
        alpha = torch.as_tensor(alpha if alpha is not None and self.noise_prior is not None else self.alpha,
                                dtype=pred.dtype)
        sd = (1.0 / torch.sqrt(alpha))[..., None] if alpha.dim() else 1.0 / torch.sqrt(alpha)
        return {"r": td.Normal(pred, sd).log_prob(data.values)}

    def split(self, data: RatingData, test_fraction: float, generator: torch.Generator):
        """Hold out a random ``test_fraction`` of the ratings."""
        perm = torch.randperm(len(data), generator=generator)
        k = max(1, int(round(test_fraction * len(data))))

        return data.subset(perm[k:]), data.subset(perm[:k])

    def heldout_score(self, result: Any, test: RatingData, test_fraction: float) -> dict[str, float]:
        """Test RMSE and log predictive density per held-out rating (needs result.data, the training set)."""
        from models.gaussian_mf.prediction import heldout_scores

        return heldout_scores(self, result.data, result, test)

    def coords(self, data: RatingData) -> dict[str, np.ndarray]:
        r, c = self.invariant_cells(data)
        return {"row": np.arange(data.shape[0]), "col": np.arange(data.shape[1]), "factor": np.arange(self.K),
                "cell": np.array([f"{i}:{j}" for i, j in zip(r.tolist(), c.tolist())])}

