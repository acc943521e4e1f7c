"""A fifth model in one file, outside the package: hierarchical Poisson rates (the "pumps" model of Gelfand & Smith
1990, data from Gaver & O'Muircheartaigh 1987). Importing this file registers it; it then gets fit_cavi, fit_gibbs,
fit_em, fit_svi, fit_nuts, compare, SBC, Geweke, check_model and the command line, with no other file touched:

    inferlab --plugin examples/hierarchical_poisson.py fit hierarchical-poisson --data pumps --method gibbs
    inferlab --plugin examples/hierarchical_poisson.py check hierarchical-poisson

docs/ADDING_A_MODEL.md walks through it.

Notation:
    n units; y_i failures over exposure t_i (thousands of hours).
    y_i | lambda_i ~ Po(lambda_i t_i),  lambda_i | beta ~ Ga(alpha, beta),  beta ~ Ga(gamma, delta)   (eq. 1)
Complete conditionals (Gibbs; EM takes their modes):
    lambda_i | beta, y ~ Ga(alpha + y_i, beta + t_i)                                                   (eq. 2)
    beta | lambda ~ Ga(gamma + n alpha, delta + sum_i lambda_i)                                         (eq. 3)
Mean field q(lambda) q(beta), every factor Gamma; CAVI replaces beta and lambda by their means in eqs. 2-3:
    q(lambda_i) = Ga(alpha + y_i, E[beta] + t_i),  q(beta) = Ga(gamma + n alpha, delta + sum_i E[lambda_i])   (eq. 4)
ELBO = sum_i [y_i (E log lambda_i + log t_i) - t_i E lambda_i - log y_i!]
     + sum_i [alpha E log beta - log Gamma(alpha) + (alpha - 1) E log lambda_i - E beta E lambda_i]
     + gamma log delta - log Gamma(gamma) + (gamma - 1) E log beta - delta E beta + H[q(lambda)] + H[q(beta)]    (eq. 5)
with H[Ga(a, b)] = a - log b + log Gamma(a) + (1 - a) digamma(a).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch

from models import registry
from models.conjugate import gamma_expectations, gamma_log_pdf, poisson_log_pmf, sample_gamma
from models.data import Data
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["HierarchicalPoisson", "PoissonRates", "RatesQ", "PUMPS"]

# Gaver & O'Muircheartaigh (1987), Table 1: failures of 10 power-plant pumps and their operating times (1000 h).
PUMPS = {"y": [5, 1, 5, 14, 3, 19, 1, 1, 4, 22], "t": [94.3, 15.7, 62.9, 126.0, 5.24, 31.4, 1.05, 1.05, 2.1, 10.5]}


@dataclass(frozen=True, eq=False)
class PoissonRates(Data):
    """Counts y (n,) over exposures t (n,) (float tensors)."""

    y: torch.Tensor
    t: torch.Tensor
    name: str = ""

    _main = "t"

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return f"PoissonRates({self.name or 'counts'}: n={len(self)}, total={float(self.y.sum()):.0f})"


def as_poisson_rates(data: Any, dtype: torch.dtype = torch.float64, name: str = "") -> PoissonRates:
    """(y, t) from a PoissonRates or a dict/pair of arrays; counts must be non-negative integers, exposures > 0."""
    if isinstance(data, PoissonRates):
        return data if data.dtype == dtype else data.to(dtype=dtype)
    y, t = (data["y"], data["t"]) if isinstance(data, dict) else data
    y, t = np.asarray(y, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if y.ndim != 1 or y.shape != t.shape or len(y) == 0:
        raise ValueError(f"data: y and t must be non-empty 1-D arrays of one length, got {y.shape} and {t.shape}")
    if not np.all(np.isfinite(y)) or (y < 0).any() or (y != np.round(y)).any():
        raise ValueError("data: y must hold non-negative integer counts")
    if not np.all(np.isfinite(t)) or (t <= 0).any():
        raise ValueError("data: exposures t must be positive and finite")
    return PoissonRates(torch.as_tensor(y, dtype=dtype), torch.as_tensor(t, dtype=dtype), name)


class RatesQ(NamedTuple):
    """The variational family: q(lambda_i) = Ga(lam_shape_i, lam_rate_i) (n,), q(beta) = Ga(beta_shape, beta_rate)."""

    lam_shape: torch.Tensor
    lam_rate: torch.Tensor
    beta_shape: torch.Tensor
    beta_rate: torch.Tensor

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        lam = sample_gamma(self.lam_shape.expand(num_samples, -1), self.lam_rate, generator)
        beta = sample_gamma(self.beta_shape.expand(num_samples), self.beta_rate, generator)
        return {"lam": lam, "beta": beta}

    def mean(self) -> dict[str, torch.Tensor]:
        return {"lam": self.lam_shape / self.lam_rate, "beta": self.beta_shape / self.beta_rate}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        return (gamma_log_pdf(torch.as_tensor(draws["lam"]), self.lam_shape, self.lam_rate).sum(-1)
                + gamma_log_pdf(torch.as_tensor(draws["beta"]), self.beta_shape, self.beta_rate))

    def to_guide(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> RatesQ:
        return cls(**{k: torch.as_tensor(params[k]) for k in cls._fields})

    def to_dict(self) -> dict[str, torch.Tensor]:
        return self._asdict()

    from_dict = from_guide


class State(NamedTuple):
    """Gibbs and EM state: lam (n,), beta ()."""

    lam: torch.Tensor
    beta: torch.Tensor


class CaviState(NamedTuple):
    params: RatesQ


def _entropy_gamma(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - torch.log(b) + torch.lgamma(a) + (1 - a) * torch.digamma(a)


@dataclass(frozen=True)
class HierarchicalPoisson:
    """Hierarchical Poisson rates (hyperparameters only): alpha the Gamma shape of the rates, beta ~ Ga(gamma, delta)
    their Gamma rate. Defaults as in Gelfand & Smith (1990)."""

    alpha: float = 1.802
    gamma: float = 0.1
    delta: float = 1.0

    name = "hierarchical-poisson"
    sites = ("lam", "beta")
    dims = {"lam": ("unit",), "beta": ()}
    max_plate_nesting = 1

    def __post_init__(self) -> None:
        for f in ("alpha", "gamma", "delta"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f} must be a positive finite number, got {v!r}")

    def hyperparameters(self) -> dict[str, float]:
        return {"alpha": self.alpha, "gamma": self.gamma, "delta": self.delta}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> PoissonRates:
        return as_poisson_rates(data, dtype)

    # -- the model (eq. 1), as a Pyro model and in closed form ------------------------------------------
    def model(self, data: PoissonRates) -> None:
        t = lambda v: torch.tensor(v, dtype=data.dtype)  # noqa: E731
        beta = pyro.sample("beta", dist.Gamma(t(self.gamma), t(self.delta)))
        with pyro.plate("units", len(data)):
            lam = pyro.sample("lam", dist.Gamma(t(self.alpha), beta))
            pyro.sample("y", dist.Poisson(lam * data.t), obs=data.y)

    def log_joint(self, data: PoissonRates, lam: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """log p(lam, beta, y), batched over leading dims: lam (..., n), beta (...)."""
        return (gamma_log_pdf(beta, self.gamma, self.delta) + gamma_log_pdf(lam, self.alpha, beta[..., None]).sum(-1)
                + poisson_log_pmf(data.y, lam * data.t).sum(-1))

    def simulate(self, size: tuple[int, float], generator: torch.Generator) -> tuple[State, PoissonRates]:
        """size = (n, exposure): n units observed for ``exposure`` each, (lam, beta) from the prior."""
        n, exposure = size
        f64 = torch.float64
        beta = sample_gamma(torch.tensor(self.gamma, dtype=f64), torch.tensor(self.delta, dtype=f64), generator)
        lam = sample_gamma(torch.full((n,), self.alpha, dtype=f64), beta, generator)
        skeleton = PoissonRates(torch.zeros(n, dtype=f64), torch.full((n,), float(exposure), dtype=f64), "simulated")
        return State(lam, beta), self.resimulate(State(lam, beta), skeleton, generator)

    def resimulate(self, state: State, data: PoissonRates, generator: torch.Generator) -> PoissonRates:
        return PoissonRates(torch.poisson(state.lam * data.t, generator=generator), data.t, data.name)

    # -- identifiable summaries and held-out score ------------------------------------------------------
    invariant_dims = {"expected": ("unit",), "log_joint": ()}

    def invariants(self, data: PoissonRates, lam: torch.Tensor, beta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The expected counts lam_i t_i and the log joint."""
        return {"expected": lam * data.t, "log_joint": self.log_joint(data, lam, beta)}

    def coords(self, data: PoissonRates) -> dict[str, np.ndarray]:
        return {"unit": np.arange(len(data))}

    def pointwise_log_lik(self, data: PoissonRates, lam: torch.Tensor, **_) -> dict[str, torch.Tensor]:
        return {"y": poisson_log_pmf(data.y, torch.as_tensor(lam) * data.t)}

    def split(self, data: PoissonRates, test_fraction: float, generator: torch.Generator):
        """Binomial thinning: y_test ~ Bin(y, f) with exposure f t, the rest with exposure (1 - f) t."""
        y_test = torch.binomial(data.y, torch.full_like(data.y, test_fraction), generator=generator)
        return (PoissonRates(data.y - y_test, (1 - test_fraction) * data.t, data.name),
                PoissonRates(y_test, test_fraction * data.t, data.name))

    def heldout_score(self, result: Any, test: PoissonRates, test_fraction: float) -> dict[str, float]:
        """Log predictive density per held-out unit, log mean_s p(y_i | lam_s)."""
        lam = torch.as_tensor(np.asarray(result.posterior["lam"])).flatten(0, 1)
        ll = poisson_log_pmf(test.y, lam * test.t)
        return {"heldout_lpd_per_unit": float((torch.logsumexp(ll, 0) - math.log(len(lam))).mean())}

    # -- Gibbs and its conditionals (eqs. 2-3) ----------------------------------------------------------
    def lam_conditional(self, data: PoissonRates, beta: torch.Tensor):
        return self.alpha + data.y, beta + data.t                                         # eq. 2

    def beta_conditional(self, lam: torch.Tensor):
        return torch.as_tensor(self.gamma + lam.shape[-1] * self.alpha, dtype=lam.dtype), self.delta + lam.sum(-1)  # eq. 3

    def gibbs_init(self, data: PoissonRates, generator: torch.Generator) -> State:
        lam = (data.y + 0.5) / data.t
        return State(lam, torch.tensor(self.alpha, dtype=data.dtype) / lam.mean())

    def gibbs_sweep(self, data: PoissonRates, state: State, generator: torch.Generator) -> State:
        lam = sample_gamma(*self.lam_conditional(data, state.beta), generator)
        beta = sample_gamma(*self.beta_conditional(lam), generator)
        return State(lam, beta)

    conditional_model = model

    def conditional_values(self, data: PoissonRates, generator: torch.Generator) -> dict[str, torch.Tensor]:
        s = warm_gibbs_state(self, data, generator)
        return s._asdict()

    def complete_conditionals(self, data: PoissonRates, values: dict) -> dict[str, Conditional]:
        return {"lam": Conditional.of("lam", dist.Gamma(*self.lam_conditional(data, values["beta"]))),
                "beta": Conditional.of("beta", dist.Gamma(*self.beta_conditional(values["lam"])))}

    # -- EM: the modes of eqs. 2-3 (iterated conditional modes) -----------------------------------------
    def em_init(self, data: PoissonRates, generator: torch.Generator) -> State:
        return self.gibbs_init(data, generator)

    def em_update(self, data: PoissonRates, state: State) -> State:
        a, b = self.lam_conditional(data, state.beta)
        lam = (a - 1).clamp_min(0) / b
        a, b = self.beta_conditional(lam)
        return State(lam, (a - 1) / b)

    # -- CAVI (eq. 4) and the ELBO (eq. 5) --------------------------------------------------------------
    family = RatesQ
    cavi_blocks = ("lam", "beta")
    cavi_options = {}  # no model-specific CAVI options

    def cavi_init(self, data: PoissonRates, generator: torch.Generator) -> CaviState:
        a = torch.tensor(self.gamma + len(data) * self.alpha, dtype=data.dtype)
        start = RatesQ(self.alpha + data.y, 1.0 + data.t, a, a * torch.rand((), generator=generator, dtype=data.dtype))
        return CaviState(start)

    def cavi_block(self, data: PoissonRates, state: CaviState, block: str) -> CaviState:
        q = state.params
        if block == "lam":
            return CaviState(q._replace(**dict(zip(("lam_shape", "lam_rate"),
                                                   self.lam_conditional(data, q.beta_shape / q.beta_rate)))))
        if block == "beta":
            a, b = self.beta_conditional(q.lam_shape / q.lam_rate)
            return CaviState(q._replace(beta_shape=a, beta_rate=b))
        raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")

    def cavi_update(self, data: PoissonRates, state: CaviState) -> tuple[CaviState, torch.Tensor]:
        for block in self.cavi_blocks:
            state = self.cavi_block(data, state, block)
        return state, self.elbo(data, state.params)

    def cavi_initial_elbo(self, data: PoissonRates, state: CaviState) -> torch.Tensor:
        return self.elbo(data, state.params)

    def cavi_state_elbo(self, data: PoissonRates, state: CaviState) -> torch.Tensor:
        return self.elbo(data, state.params)

    def elbo(self, data: PoissonRates, q: RatesQ) -> torch.Tensor:
        """eq. 5, every constant included."""
        E_lam, El_lam = gamma_expectations(q.lam_shape, q.lam_rate)
        E_beta, El_beta = gamma_expectations(q.beta_shape, q.beta_rate)
        lik = (data.y * (El_lam + torch.log(data.t)) - data.t * E_lam - torch.lgamma(data.y + 1)).sum()
        rates = (self.alpha * El_beta - math.lgamma(self.alpha) + (self.alpha - 1) * El_lam - E_beta * E_lam).sum()
        top = self.gamma * math.log(self.delta) - math.lgamma(self.gamma) + (self.gamma - 1) * El_beta - self.delta * E_beta
        return lik + rates + top + _entropy_gamma(q.lam_shape, q.lam_rate).sum() + _entropy_gamma(q.beta_shape, q.beta_rate)

    def objective_attrs(self, data: PoissonRates, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo)}

    # -- SVI: the Pyro guide of the same family ---------------------------------------------------------
    svi_elbo = "meanfield"

    @property
    def guide_constraints(self) -> dict[str, Any]:
        return {k: dist.constraints.positive for k in RatesQ._fields}

    def guide_init(self, data: PoissonRates, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.cavi_init(data, generator).params.to_guide()

    def guide(self, data: PoissonRates, params: dict[str, torch.Tensor]) -> None:
        pyro.sample("beta", dist.Gamma(params["beta_shape"], params["beta_rate"]))
        with pyro.plate("units", len(data)):
            pyro.sample("lam", dist.Gamma(params["lam_shape"], params["lam_rate"]))


def _synthetic(rows: int, cols: int, true_K: int, generator: torch.Generator) -> PoissonRates:
    """``rows`` units with exposure ``cols`` each, drawn from the default model's prior."""
    return HierarchicalPoisson().simulate((rows, float(cols)), generator)[1]


def _read_file(path) -> PoissonRates:
    """A .csv with columns y, t."""
    import pandas as pd

    df = pd.read_csv(path)
    if not {"y", "t"} <= set(df.columns):
        raise ValueError(f"{path.name}: needs columns y, t; got {list(df.columns)}")
    return as_poisson_rates({"y": df["y"].to_numpy(), "t": df["t"].to_numpy()}, name=path.name)


SPEC = registry.register(registry.ModelSpec(
    name="hierarchical-poisson",
    model_class=HierarchicalPoisson,
    summary="hierarchical Poisson rates (Gelfand & Smith's pumps; an example of a model added in one file)",
    hyperparameters=("alpha", "gamma", "delta"),
    synthetic=_synthetic,
    synthetic_size=(10, 5),
    synthetic_help="units x exposure per unit",
    datasets=(registry.DataSet("pumps", lambda: as_poisson_rates(PUMPS, name="pumps"),
                               "failures of 10 pumps (Gaver & O'Muircheartaigh 1987)"),),
    read_file=_read_file,
    file_help=".csv with columns y (counts), t (exposures)",
    default_K=None,
    # calibration draws problems from the prior: Ga(2, 2) on beta keeps the rates and counts moderate (the pumps'
    # Ga(0.1, 1) hyperprior draws beta down to 1e-16 and counts up to 1e16)
    calibration=registry.Calibration(size=(5, 2.0), warmup=50, thin=2, model_options={"gamma": 2.0, "delta": 2.0}),
    compare_methods=("cavi", "gibbs", "svi", "nuts", "em"),
))
