"""Poisson-gamma matrix factorisation for count matrices (e.g. LastFM listening counts).

Notation:
    N rows (users), M columns (items), K factors, nnz nonzero counts.
    x_nm ~ Po(sum_k theta_nk eta_mk),  theta_nk ~ Ga(a_theta, b_theta),  eta_mk ~ Ga(a_eta, b_eta)  (rate form)
    augmented: x_nm = sum_k z_nmk,  z_nmk ~ Po(theta_nk eta_mk)                                  (eq. 1)

Complete conditionals (shared by Gibbs and CAVI, docs/REFERENCE.md section 1):
    z_nm | .     ~ Mult(x_nm, p_nm),  p_nmk ∝ theta_nk eta_mk                                     (eq. 2)
    theta_nk | . ~ Ga(a_theta + sum_m z_nmk, b_theta + sum_m eta_mk)                              (eq. 3)
    eta_mk | .   ~ Ga(a_eta + sum_n z_nmk, b_eta + sum_n theta_nk)                                 (eq. 4)

The scale move (Gibbs, after eq. 4; Liu and Sabatti 2000, as the interweaving of Yu and Meng 2011): the map
theta_.k -> c theta_.k, eta_.k -> eta_.k / c leaves every rate theta_n . eta_m unchanged, so only the priors and the
Jacobian c^(N - M) (with the Haar measure dc / c) move. Drawing each c_k from
    c_k | theta, eta ~ GIG(p = N a_theta - M a_eta, a = 2 b_theta sum_n theta_nk, b = 2 b_eta sum_m eta_mk)   (eq. 7)
(density ∝ c^(p-1) exp(-(a c + b / c) / 2)) leaves the posterior invariant and moves along the ridge of equal rates
that the one-block-at-a-time conditionals cross slowly.

Mean-field CAVI replaces each statistic by its expectation under q (models/poisson_mf/vb.py):
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
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from models.conjugate import (gamma_log_pdf_sum, gamma_posterior, multinomial_log_pmf, poisson_log_pmf, sample_gamma,
                              sample_gig, sample_multinomial)
from models.data import CountMatrix, as_count_matrix, sample_indices
from models.poisson_mf.stochastic import PoissonMFStochastic
from models.poisson_mf.vb import PoissonMFVB, sampled_products
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["PoissonMF", "GibbsState"]

# Largest (draws x nnz x K) evaluated in one batch by log_joint.
_BATCHED_LOG_JOINT_MAX = 20_000_000


class GibbsState(NamedTuple):
    """Gibbs and EM state: theta (N, K), eta (M, K). z is resampled from scratch each sweep."""

    theta: torch.Tensor
    eta: torch.Tensor


def sparse_likelihood(data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> None:
    """The Pyro sites of X | theta, eta over all N x M cells from the nonzeros only: log Po(x_nm; r_nm) on the
    nonzeros and minus the zero cells' total rate, (sum_n theta_n) . (sum_m eta_m) - sum_nonzero r_nm."""
    import pyro
    import pyro.distributions as dist

    rate_nz = (theta[..., data.rows, :] * eta[..., data.cols, :]).sum(-1)
    with pyro.plate("nonzero", data.nnz):
        pyro.sample("x", dist.Poisson(rate_nz), obs=data.values)
    pyro.factor("x_zero_cells", -((theta.sum(-2) * eta.sum(-2)).sum(-1) - rate_nz.sum(-1)))


def augmented_likelihood(data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> None:
    """The Pyro sites of x | theta, eta in the augmented model (eq. 1): z_nmk ~ Po(theta_nk eta_mk) on the nonzero
    cells, x_nm = sum_k z_nmk (a Delta site), and the zero cells' z = 0 (log-mass minus their total rate)."""
    import pyro
    import pyro.distributions as dist

    rates = theta[data.rows] * eta[data.cols]
    with pyro.plate("nonzero", data.nnz):
        z = pyro.sample("z", dist.Poisson(rates).to_event(1))
        pyro.sample("x", dist.Delta(z.sum(-1)), obs=data.values)
    pyro.factor("x_zero_cells", -((theta.sum(0) * eta.sum(0)).sum() - rates.sum()))


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PoissonMF(PoissonMFVB, PoissonMFStochastic):
    """Poisson-gamma matrix factorisation: hyperparameters only (no data, no fitted state).

    Args:
        K: number of factors (>= 1).
        a_theta, b_theta: Gamma(shape, rate) prior of theta_nk.
        a_eta, b_eta: Gamma(shape, rate) prior of eta_mk.

    Course settings: ``PoissonMF.course_lastfm()`` (K=40, a=1, b=0.5) and ``PoissonMF.course_synthetic()``
    (K=10, a=0.1, b=1). CAVI options (keywords of fit_cavi): init "default" | "reference", elbo_at "after_z" |
    "after_eta" (the course's).
    """

    K: int
    a_theta: float = 1.0
    b_theta: float = 0.5
    a_eta: float = 1.0
    b_eta: float = 0.5
    scale_move: bool = False

    name = "poisson-mf"
    sites = ("theta", "eta")
    max_plate_nesting = None
    dims = {"theta": ("row", "factor"), "eta": ("col", "factor")}

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise ValueError(f"K must be an integer >= 1, got {self.K!r}")
        object.__setattr__(self, "K", int(self.K))
        for field_name in ("a_theta", "b_theta", "a_eta", "b_eta"):
            object.__setattr__(self, field_name, _positive_finite(field_name, getattr(self, field_name)))
        if not isinstance(self.scale_move, (bool, np.bool_)):
            raise ValueError(f"scale_move must be True or False, got {self.scale_move!r}")

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
                "b_eta": self.b_eta, "scale_move": self.scale_move}

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
        import pyro
        import pyro.distributions as dist

        N, M = data.shape
        a_t, b_t, a_e, b_e = self._prior_tensors(data.values)
        theta = pyro.sample("theta", dist.Gamma(a_t, b_t).expand([N, self.K]).to_event(2))
        eta = pyro.sample("eta", dist.Gamma(a_e, b_e).expand([M, self.K]).to_event(2))
        sparse_likelihood(data, theta, eta)

    def augmented_model(self, data: CountMatrix) -> None:
        """Pyro model of the augmented joint p(theta, eta, z, X) (eq. 1): z_nmk ~ Po(theta_nk eta_mk) on the
        nonzero cells, x_nm = sum_k z_nmk (a Delta site), zero cells have z = 0 (log-mass -r_nm)."""
        import pyro
        import pyro.distributions as dist

        N, M = data.shape
        a_t, b_t, a_e, b_e = self._prior_tensors(data.values)
        theta = pyro.sample("theta", dist.Gamma(a_t, b_t).expand([N, self.K]).to_event(2))
        eta = pyro.sample("eta", dist.Gamma(a_e, b_e).expand([M, self.K]).to_event(2))
        augmented_likelihood(data, theta, eta)

    conditional_model = augmented_model

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
        lp = gamma_log_pdf_sum(theta, self.a_theta, self.b_theta) + gamma_log_pdf_sum(eta, self.a_eta, self.b_eta)
        if theta.dim() == 2 and not (theta.requires_grad or eta.requires_grad):
            rate_nz = sampled_products(data, theta, eta)
        else:
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

    def conditional_values(self, data: CountMatrix, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A point of the augmented model at which to check the conditionals: a few Gibbs sweeps from the prior,
        and z drawn from eq. 2."""
        state = warm_gibbs_state(self, data, generator)
        z = sample_multinomial(data.values, self.z_conditional(data, *state), generator)
        return {"theta": state.theta, "eta": state.eta, "z": z}

    def complete_conditionals(self, data: CountMatrix, values: dict[str, torch.Tensor]) -> dict[str, Conditional]:
        """Eqs. 2-4 at ``values`` = {theta, eta, z} as conditionals of the augmented model."""
        theta, eta, z = values["theta"], values["eta"], values["z"]
        p = self.z_conditional(data, theta, eta)
        z_theta = torch.zeros_like(theta).index_add(0, data.rows, z)
        z_eta = torch.zeros_like(eta).index_add(0, data.cols, z)
        return {"z": Conditional(("z",), lambda g: {"z": sample_multinomial(data.values, p, g)},
                                 lambda v: multinomial_log_pmf(v["z"], data.values, p).sum()),
                "theta": Conditional.of("theta", torch.distributions.Gamma(*self.theta_conditional(z_theta, eta))),
                "eta": Conditional.of("eta", torch.distributions.Gamma(*self.eta_conditional(z_eta, theta)))}

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
        """One systematic-scan sweep: z | theta, eta (eq. 2); theta | z, eta (eq. 3); eta | z, theta (eq. 4); then,
        with ``scale_move``, every factor's scale (eq. 7).
        theta (..., N, K), eta (..., M, K): leading dimensions are independent chains."""
        theta, eta = state
        z = sample_multinomial(data.values, self.z_conditional(data, theta, eta), generator)     # eq. 2
        z_theta = torch.zeros_like(theta).index_add_(-2, data.rows, z)
        z_eta = torch.zeros_like(eta).index_add_(-2, data.cols, z)
        theta = sample_gamma(*self.theta_conditional(z_theta, eta), generator)                  # eq. 3
        eta = sample_gamma(*self.eta_conditional(z_eta, theta), generator)                      # eq. 4
        if self.scale_move:
            c = sample_gig(*self.scale_conditional(theta, eta), generator)                      # eq. 7
            theta, eta = theta * c[..., None, :], eta / c[..., None, :]
        return GibbsState(theta, eta)

    def scale_conditional(self, theta: torch.Tensor, eta: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """GIG(p, a, b) of the per-factor scales c (..., K) given theta (..., N, K) and eta (..., M, K) (eq. 7)."""
        N, M = theta.shape[-2], eta.shape[-2]
        return (N * self.a_theta - M * self.a_eta, 2 * self.b_theta * theta.sum(-2), 2 * self.b_eta * eta.sum(-2))

    # ------------------------------------------------------------------------------------------------
    # EM for the posterior mode (the loop lives in inference.em)

    def em_init(self, data: CountMatrix, generator: torch.Generator) -> GibbsState:
        """Start at the mean of CAVI's data-informed initial q (random shapes, rates at the independence fit).
        The mode of a Ga(a, b) prior is at 0 and its density unbounded there when a < 1: no MAP exists then."""
        if self.a_theta < 1 or self.a_eta < 1:
            raise ValueError(f"EM finds the posterior mode, which does not exist when a_theta or a_eta < 1 (the Gamma "
                             f"density is unbounded at 0); got a_theta={self.a_theta}, a_eta={self.a_eta}: use CAVI or Gibbs")
        p = self.cavi_init(data, generator).params.mean()
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

    invariant_dims = {"rate": ("cell",), "log_joint": ()}

    def invariant_cells(self, data: CountMatrix, max_cells: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """Cells (rows, cols) whose rates are tracked across methods: all N x M cells when there are at most
        ``max_cells``, else half nonzero and half uniformly drawn cells, fixed by seed 0 (computed once per matrix)."""
        key = ("invariant_cells", max_cells)
        if key not in data._csr:
            data._csr[key] = _invariant_cells(data, max_cells)
        return data._csr[key]

    def invariants(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Identifiable quantities of draws theta (..., N, K), eta (..., M, K): "rate" (..., C) at
        :meth:`invariant_cells` and "log_joint" (...)."""
        r, c = self.invariant_cells(data)
        return {"rate": (theta[..., r, :] * eta[..., c, :]).sum(-1), "log_joint": self.log_joint(data, theta, eta)}

    def coords(self, data: CountMatrix) -> dict[str, np.ndarray]:
        """Labels of the dimensions: rows, cols, factor, and the tracked cells as "row:col" strings."""
        N, M = data.shape
        rows = data.row_labels if data.row_labels is not None else np.arange(N)
        cols = data.col_labels if data.col_labels is not None else np.arange(M)
        r, c = self.invariant_cells(data)
        cells = np.array([f"{rows[i]}:{cols[j]}" for i, j in zip(r.tolist(), c.tolist())])
        return {"row": np.asarray(rows), "col": np.asarray(cols), "factor": np.arange(self.K), "cell": cells}

    def pointwise_log_lik(self, data: CountMatrix, theta: torch.Tensor, eta: torch.Tensor, **_) -> dict[str, torch.Tensor]:
        """log Poisson(x_nm | theta_n . eta_m) for every cell (zeros included), row-major: {"x": (..., N M)}."""
        X = torch.zeros(data.shape, dtype=theta.dtype)
        X[data.rows, data.cols] = data.values.to(theta.dtype)
        rates = torch.as_tensor(theta) @ torch.as_tensor(eta).transpose(-1, -2)
        return {"x": poisson_log_pmf(X, rates).reshape(rates.shape[:-2] + (-1,))}

    def pointwise_size(self, data: CountMatrix) -> int:
        """The number of entries of :meth:`pointwise_log_lik` per draw: N x M."""
        return data.shape[0] * data.shape[1]

    def predicted_rates(self, theta: torch.Tensor, eta: torch.Tensor, rows: torch.Tensor,
                        cols: torch.Tensor) -> torch.Tensor:
        """Rates theta_n . eta_m at the given cells. theta (..., N, K), eta (..., M, K) -> (..., C)."""
        return (theta[..., rows, :] * eta[..., cols, :]).sum(-1)

    # ------------------------------------------------------------------------------------------------
    # Held-out evaluation (used by inference.workflows.compare)

    def split(self, data: CountMatrix, test_fraction: float, generator: torch.Generator
              ) -> tuple[CountMatrix, CountMatrix]:
        """Held-out split by binomial thinning (see CountMatrix.thin): every cell is held out in part."""
        return data.thin(test_fraction, generator)

    def heldout_score(self, result: Any, test: CountMatrix, test_fraction: float) -> dict[str, float]:
        """Held-out Poisson log-likelihood per test count at the posterior mean rates.

        A model fitted on the thinned training part predicts the test part with rates
        f / (1 - f) * E[theta_n . eta_m] over all N x M cells (zeros included).
        """
        from models.poisson_mf.products import expected_rates, expected_total_rate

        scale = test_fraction / (1.0 - test_fraction)
        rate_nz = scale * expected_rates(result, test.rows, test.cols)
        total = scale * expected_total_rate(result)
        ll = poisson_log_pmf(test.values, rate_nz).sum() - (total - rate_nz.sum())
        return {"heldout_loglik_per_count": float(ll) / test.total}


def _invariant_cells(data: CountMatrix, max_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """See PoissonMF.invariant_cells."""
    N, M = data.shape
    if N * M <= max_cells:
        r, c = torch.meshgrid(torch.arange(N), torch.arange(M), indexing="ij")
        return r.reshape(-1).to(data.device), c.reshape(-1).to(data.device)
    g = torch.Generator().manual_seed(0)
    pick = sample_indices(data.nnz, max_cells // 2, g).to(data.device)
    flat = sample_indices(N * M, max_cells - pick.numel(), g).to(data.device)
    return torch.cat([data.rows[pick], flat // M]), torch.cat([data.cols[pick], flat % M])
