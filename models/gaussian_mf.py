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
import pyro
import pyro.distributions as dist
import torch

from inference.results import register_model
from models.bayes_gmm_full import sample_wishart
from models.conjugate import sample_gamma
from models.gaussian_mf_vb import GaussianMFVB, VBState
from models.ratings import RatingData, as_rating_data, gram_rhs

__all__ = ["GaussianMF", "RatingData", "as_rating_data", "GibbsState", "VBState", "predict", "recommend"]

LOG_2PI = math.log(2 * math.pi)


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


def _sample_gaussian_rows(P: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw x_i ~ N(P_i^-1 b_i, P_i^-1) for every row at once (batched Cholesky). P (R, K, K), b (R, K)."""
    L = torch.linalg.cholesky(P)
    mean = torch.cholesky_solve(b[..., None], L)[..., 0]
    eps = torch.randn(b.shape, generator=generator, dtype=b.dtype)
    return mean + torch.linalg.solve_triangular(L.transpose(-1, -2), eps[..., None], upper=True)[..., 0]


def _solve_rows(P: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x_i = P_i^-1 b_i for every row at once (batched Cholesky). P (R, K, K), b (R, K)."""
    return torch.cholesky_solve(b[..., None], torch.linalg.cholesky(P))[..., 0]


@register_model
@dataclass(frozen=True)
class GaussianMF(GaussianMFVB):
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
        beta, nu = self.beta0 + R, K + R
        W_inv = torch.eye(K, dtype=F.dtype) / self.w0 + NS + self.beta0 * R / beta * torch.outer(fbar, fbar)
        W = torch.linalg.inv(W_inv)
        return R * fbar / beta, beta, 0.5 * (W + W.T), nu

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
                mu = self._mvn_draw(self.beta0 * Lam, torch.zeros(self.K, dtype=dt), generator)
            else:
                mu, Lam = self._fixed_hyper(sigma, dt)
            F = self._mvn_draw(Lam, mu.expand(n, -1), generator)
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
        return RatingData(data.rows, data.cols, pred + noise, data.shape, data.name)

    @staticmethod
    def _mvn_draw(precision: torch.Tensor, mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draws of N(mean, precision^-1), one per row of mean (R, K) or a single one for mean (K,)."""
        L = torch.linalg.cholesky(precision)  # x = mean + L^-T eps has covariance precision^-1
        eps = torch.randn(mean.reshape(-1, mean.shape[-1]).shape, generator=generator, dtype=mean.dtype)
        return mean + torch.linalg.solve_triangular(L.T, eps.T, upper=True).T.reshape(mean.shape)

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
        m, beta, W, nu = self.hyper_conditional(F)
        Lam = sample_wishart(W[None], torch.tensor([float(nu)], dtype=F.dtype), generator)[0]
        L = torch.linalg.cholesky(beta * Lam)
        eps = torch.randn(self.K, generator=generator, dtype=F.dtype)
        return m + torch.linalg.solve_triangular(L.T, eps[:, None], upper=True)[:, 0], Lam

    def gibbs_sweep(self, data: RatingData, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """BPMF: (mu_U, Lambda_U) | U; U | V, hyper; (mu_V, Lambda_V) | V; V | U, hyper; then alpha | rest when
        it has a prior. Fixed prior: U, V (and alpha) only."""
        U, V, mu_U, Lam_U, mu_V, Lam_V, alpha = state
        if self.prior == "bpmf":
            mu_U, Lam_U = self._sample_hyper(U, generator)                                   # eq. 2
        U = _sample_gaussian_rows(*self.row_conditional(data, V, mu_U, Lam_U, "U", alpha), generator)  # eq. 1
        if self.prior == "bpmf":
            mu_V, Lam_V = self._sample_hyper(V, generator)
        V = _sample_gaussian_rows(*self.row_conditional(data, U, mu_V, Lam_V, "V", alpha), generator)
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
            mu_U, Lam_U = self._hyper_mode(U)                                                  # eq. 2 mode
        U = _solve_rows(*self.row_conditional(data, V, mu_U, Lam_U, "U", alpha))              # eq. 1 mode
        if self.prior == "bpmf":
            mu_V, Lam_V = self._hyper_mode(V)
        V = _solve_rows(*self.row_conditional(data, U, mu_V, Lam_V, "V", alpha))
        if self.noise_prior is not None:
            a, b = self.noise_conditional(data, U, V)
            alpha = (a - 1) / b                                                               # eq. 3 mode
        return GibbsState(U, V, mu_U, Lam_U, mu_V, Lam_V, alpha)

    def _hyper_mode(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint mode of NW(mu*, beta*, W*, nu*) = N(mu | mu*, (beta* Lambda)^-1) W(Lambda | W*, nu*): the density is
        |Lambda|^((nu* - K)/2) exp(-tr(W*^-1 Lambda)/2 - beta* (mu - mu*)^T Lambda (mu - mu*)/2), so mu = mu* and
        Lambda = (nu* - K) W*."""
        m, _, W, nu = self.hyper_conditional(F)
        return m, (nu - self.K) * W

    def noise_conditional(self, data: RatingData, U: torch.Tensor, V: torch.Tensor):
        """Ga(a + n/2, b + SSE/2) of alpha | U, V, R (eq. 3)."""
        resid = data.values - self.offset(data) - (U[data.rows] * V[data.cols]).sum(-1)
        a, b = self.noise_prior
        return (torch.tensor(a + 0.5 * len(data), dtype=U.dtype), b + 0.5 * (resid ** 2).sum())

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
            noise_lp = dist.Gamma(torch.tensor(self.noise_prior[0], dtype=dt),
                                  torch.tensor(self.noise_prior[1], dtype=dt)).log_prob(alpha)
        else:
            alpha, noise_lp = torch.tensor(self.alpha, dtype=dt), 0.0
        lik = dist.Normal(pred, 1.0 / torch.sqrt(alpha)).log_prob(data.values).sum() + noise_lp
        if self.prior == "fixed":
            zero = torch.zeros((), dtype=dt)  # float64 parameters (python floats would make float32 ones)
            return (lik + dist.Normal(zero, self.sigma_U).log_prob(U).sum()
                    + dist.Normal(zero, self.sigma_V).log_prob(V).sum())
        lp = lik
        for F, mu, Lam in ((U, mu_U, Lambda_U), (V, mu_V, Lambda_V)):
            logdet = torch.logdet(Lam)
            K, nu = self.K, float(self.K)  # Wishart(W0 = w0 I, nu0 = K) log density, written out
            lp = lp + ((nu - K - 1) / 2 * logdet - torch.diagonal(Lam).sum() / (2 * self.w0) - nu * K / 2 * math.log(2)
                       - nu * K / 2 * math.log(self.w0) - torch.mvlgamma(torch.tensor(nu / 2, dtype=dt), K))
            lp = lp + 0.5 * (self.K * math.log(self.beta0) + logdet - self.K * LOG_2PI - self.beta0 * mu @ Lam @ mu)
            D = F - mu
            lp = lp + 0.5 * (F.shape[0] * (logdet - self.K * LOG_2PI) - ((D @ Lam) * D).sum())
        return lp

    # ------------------------------------------------------------------------------------------------
    # Identifiable quantities

    invariant_dims = {"pred": ("cell",), "log_joint": ()}

    def invariant_cells(self, data: RatingData, max_cells: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Observed cells whose predictions are tracked (the first max_cells of a fixed permutation)."""
        pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:max_cells]
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
        return {"r": dist.Normal(pred, sd).log_prob(data.values)}

    def split(self, data: RatingData, test_fraction: float, generator: torch.Generator):
        """Hold out a random ``test_fraction`` of the ratings."""
        perm = torch.randperm(len(data), generator=generator)
        k = max(1, int(round(test_fraction * len(data))))

        def sub(idx):  # sorted indices keep the row-major order
            idx = idx.sort().values
            return RatingData(data.rows[idx], data.cols[idx], data.values[idx], data.shape, data.name)
        return sub(perm[k:]), sub(perm[:k])

    def heldout_score(self, result: Any, test: RatingData, test_fraction: float) -> dict[str, float]:
        """Test RMSE and log predictive density per held-out rating (needs result.data, the training set)."""
        return _heldout(self, result.data, result, test)

    def coords(self, data: RatingData) -> dict[str, np.ndarray]:
        r, c = self.invariant_cells(data)
        return {"row": np.arange(data.shape[0]), "col": np.arange(data.shape[1]), "factor": np.arange(self.K),
                "cell": np.array([f"{i}:{j}" for i, j in zip(r.tolist(), c.tolist())])}


def _heldout(model: "GaussianMF", train: RatingData, result: Any, test: RatingData) -> dict[str, float]:
    """Test RMSE of the posterior mean prediction and log predictive density per rating,
    log mean_s N(r_ij; offset + u_i^(s) . v_j^(s), 1 / alpha^(s))."""
    mean, _ = predict(model, train, result, test.rows, test.cols)
    rmse = float(torch.sqrt(((torch.as_tensor(mean) - test.values) ** 2).mean()))
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)
    if "alpha" in result.posterior and model.noise_prior is not None:
        alpha = torch.as_tensor(np.asarray(result.posterior["alpha"])).flatten(0, 1)
    else:
        alpha = torch.full((len(U),), model.alpha, dtype=torch.float64)
    off = model.offset(train)
    lp = torch.stack([dist.Normal(off + (u[test.rows] * v[test.cols]).sum(-1), 1 / torch.sqrt(a)).log_prob(test.values)
                      for u, v, a in zip(U, V, alpha)])
    lpd = torch.logsumexp(lp, 0) - math.log(len(U))
    return {"test_rmse": rmse, "heldout_lpd_per_rating": float(lpd.mean())}


def predict(model: GaussianMF, train: RatingData, result: Any, rows, cols, *, clip: tuple[float, float] | None = None,
            chunk: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Posterior predictive mean and sd of u_i . v_j (+ offset) at the given cells, over all draws.

    The sd is that of the predicted mean rating across posterior draws (not including the noise 1/alpha).
    ``clip`` clamps each draw's prediction to a rating range before averaging."""
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)
    rows, cols = torch.as_tensor(np.asarray(rows)), torch.as_tensor(np.asarray(cols))
    s1 = torch.zeros(len(rows), dtype=torch.float64)
    s2 = torch.zeros(len(rows), dtype=torch.float64)
    off = model.offset(train)
    for start in range(0, len(U), chunk):
        p = off + (U[start:start + chunk, rows] * V[start:start + chunk, cols]).sum(-1)
        if clip is not None:
            p = p.clamp(*clip)
        s1 += p.sum(0)
        s2 += (p ** 2).sum(0)
    S = len(U)
    mean = s1 / S
    return mean.numpy(), torch.sqrt((s2 / S - mean ** 2).clamp_min(0)).numpy()


def recommend(model: GaussianMF, train: RatingData, result: Any, user: int, *, n: int = 10, titles=None,
              exclude_rated: bool = True, clip: tuple[float, float] | None = (1.0, 5.0)):
    """Top-``n`` items for one user by posterior mean predicted rating, with its uncertainty.

    Returns a pandas DataFrame: item, title (when ``titles`` (M,) is given), mean, sd (posterior sd of the mean
    rating u_i . v_j + offset across draws), predictive_sd (sqrt(sd^2 + 1 / alpha): the spread of a new rating),
    and the 90% posterior interval of the mean rating (lo90, hi90). Items the user rated in ``train`` are
    left out when ``exclude_rated``."""
    import pandas as pd

    N, M = train.shape
    if isinstance(user, bool) or not isinstance(user, (int, np.integer)) or not 0 <= user < N:
        raise ValueError(f"user must be a row index in [0, {N}), got {user!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if titles is not None and len(titles) != M:
        raise ValueError(f"titles has {len(titles)} entries, the data have {M} items")
    items = torch.arange(M)
    if exclude_rated:
        rated = torch.zeros(M, dtype=torch.bool)
        rated[train.cols[train.rows == user]] = True
        items = items[~rated]
    mean, sd = predict(model, train, result, torch.full((len(items),), user), items, clip=clip)
    top = np.argsort(-mean, kind="stable")[:n]
    U = torch.as_tensor(np.asarray(result.posterior["U"])).flatten(0, 1)[:, user]
    V = torch.as_tensor(np.asarray(result.posterior["V"])).flatten(0, 1)[:, items[top]]
    draws = (model.offset(train) + (V * U[:, None, :]).sum(-1)).numpy()
    if clip is not None:
        draws = np.clip(draws, *clip)
    if "alpha" in result.posterior and model.noise_prior is not None:
        noise_var = float(np.mean(1.0 / np.asarray(result.posterior["alpha"])))
    else:
        noise_var = 1.0 / model.alpha
    out = pd.DataFrame({"item": items[top].numpy(), "mean": mean[top], "sd": sd[top],
                        "predictive_sd": np.sqrt(sd[top] ** 2 + noise_var),
                        "lo90": np.quantile(draws, 0.05, axis=0), "hi90": np.quantile(draws, 0.95, axis=0)})
    if titles is not None:
        out.insert(1, "title", np.asarray(titles)[out["item"].to_numpy()])
    return out
