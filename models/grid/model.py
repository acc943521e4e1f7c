"""Pairwise Markov random fields on an H x W grid (4-neighbour) with K ordered labels: image denoising.

Notation:
    pixels a = (i, j), i < H, j < W; labels k < K; E the 4-neighbour edges, horizontal (i, j)-(i, j+1) and vertical
    (i, j)-(i+1, j); N(a) the neighbours of a.
    p(y) = exp(sum_a phi_a(y_a) + sum_{(a,b) in E} theta(y_a, y_b)) / Z                                  (eq. 1)
    phi_a (K,) the node log-potential; theta (K, K) the symmetric edge log-potential; Z the partition function.
The course's denoising model (docs/REFERENCE.md section 4): phi_a(k) = 10 [x_a = k] for the noisy observed label
image x, and theta(k1, k2) = 10 if k1 = k2, 2 if |k1 - k2| = 1, else 0. Ising (K = 2) and Potts (theta = J [k1 = k2])
are special cases.
Complete conditional of one pixel (Gibbs; ICM takes its mode):
    p(y_a = k | y_N(a)) ∝ exp(phi_a(k) + sum_{b in N(a)} theta(k, y_b))                                   (eq. 2)
Pixels of one colour of the checkerboard ((i + j) even: "black", odd: "white") share no edge, so each colour is
updated at once given the other.
Mean field (models/grid/vb.py):  log lambda_a(k) = phi_a(k) + sum_{b in N(a)} sum_k2 lambda_b(k2) theta(k, k2) + c  (eq. 3)
Loopy belief propagation (models/grid/bp.py), exact inference (models/grid/exact.py).

log_joint is the log of the unnormalised density, sum_a phi_a(y_a) + sum_E theta(y_a, y_b): for an undirected model
the normaliser is the partition function, which exact inference computes (log_partition) where the grid is narrow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from models.grid.bp import GridBP
from models.grid.data import GridData, as_grid_data
from models.grid.exact import GridExact
from models.grid.lattice import Band, bands, checkerboard, halo_sum
from models.grid.vb import GridMeanField
from models.protocol import Conditional, warm_gibbs_state

__all__ = ["GridMRF", "GridData", "as_grid_data", "GibbsState", "marginals_of", "COURSE_THETA"]

MAX_PYRO_PIXELS = 64  # the per-pixel Pyro model is for small grids (exact enumeration, SVI with an enumerated guide)


def course_theta(K: int) -> tuple[tuple[float, ...], ...]:
    """The course's edge table: 10 on the diagonal, 2 for labels one apart, 0 otherwise."""
    return tuple(tuple(10.0 if a == b else (2.0 if abs(a - b) == 1 else 0.0) for b in range(K)) for a in range(K))


COURSE_THETA = course_theta(2)


class GibbsState(NamedTuple):
    """Gibbs and ICM state: the labels y (..., H, W) int64 (leading dimensions: chains)."""

    y: torch.Tensor


@dataclass(frozen=True)
class GridMRF(GridMeanField, GridBP, GridExact):
    """Pairwise MRF on a grid with K ordered labels (hyperparameters only).

    Args:
        K: labels (>= 2).
        theta: the symmetric K x K edge log-potential as a tuple of rows (default: the course's table), or a number J
            for the Potts table J [k1 = k2].
        node_strength: phi_a(k) = node_strength [x_a = k] when the data are a label image (the course: 10).

    Constructors: ``GridMRF.course(K)``, ``GridMRF.ising(J, node_strength)``, ``GridMRF.potts(K, J, node_strength)``.
    Methods: fit_exact (narrow grids), fit_cavi (mean field; options schedule "checkerboard" | "raster" (the
    course's), init "uniform" (the course's) | "node"), fit_bp (loopy BP), fit_gibbs (checkerboard sweeps), fit_em
    (ICM: a local mode), fit_svi (the mean-field guide, small grids).
    """

    K: int = 2
    theta: tuple = field(default=None)
    node_strength: float = 10.0

    name = "grid-mrf"
    sites = ("y",)
    dims = {"y": ("row", "col")}
    max_plate_nesting = 0

    def __post_init__(self) -> None:
        if isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 2:
            raise ValueError(f"K must be an integer >= 2, got {self.K!r}")
        object.__setattr__(self, "K", int(self.K))
        theta = course_theta(self.K) if self.theta is None else self.theta
        if isinstance(theta, (int, float)) and not isinstance(theta, bool):  # a number J: Potts, J [k1 = k2]
            theta = tuple(tuple(float(theta) if a == b else 0.0 for b in range(self.K)) for a in range(self.K))
        try:
            arr = np.asarray(theta, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"theta must be a K x K table of numbers, got {theta!r}") from None
        if arr.shape != (self.K, self.K):
            raise ValueError(f"theta must be K x K = {self.K} x {self.K}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("theta: edge potentials must be finite")
        if not np.array_equal(arr, arr.T):
            i, j = np.argwhere(arr != arr.T)[0]
            raise ValueError(f"theta must be symmetric: theta[{i}][{j}] = {arr[i, j]} but theta[{j}][{i}] = {arr[j, i]}")
        object.__setattr__(self, "theta", tuple(tuple(float(v) for v in row) for row in arr))
        if isinstance(self.node_strength, bool) or not isinstance(self.node_strength, (int, float)) \
                or not math.isfinite(self.node_strength):
            raise ValueError(f"node_strength must be a finite number, got {self.node_strength!r}")

    @classmethod
    def course(cls, K: int = 2) -> GridMRF:
        """The course's denoising model: phi = 10 [x = k], theta = 10 / 2 / 0."""
        return cls(K=K, theta=course_theta(K), node_strength=10.0)

    @classmethod
    def ising(cls, J: float = 1.0, node_strength: float = 1.0) -> GridMRF:
        """K = 2 with theta = J [k1 = k2] (a ferromagnetic Ising model for J > 0)."""
        return cls(K=2, theta=((J, 0.0), (0.0, J)), node_strength=node_strength)

    @classmethod
    def potts(cls, K: int, J: float = 1.0, node_strength: float = 1.0) -> GridMRF:
        """theta = J [k1 = k2]."""
        return cls(K=K, theta=float(J), node_strength=node_strength)

    def hyperparameters(self) -> dict[str, Any]:
        return {"K": self.K, "theta": [list(r) for r in self.theta], "node_strength": self.node_strength}

    def prepare(self, data: Any, *, dtype: torch.dtype = torch.float64, device: str = "cpu") -> GridData:
        return as_grid_data(data, self.K, node_strength=self.node_strength, dtype=dtype)

    def Theta(self, like: torch.Tensor) -> torch.Tensor:
        """The edge table as a (K, K) tensor of ``like``'s dtype and device."""
        return torch.tensor(self.theta, dtype=like.dtype, device=like.device)

    # ------------------------------------------------------------------------------------------------
    # The unnormalised log density (eq. 1) and the conditionals (eq. 2)

    def log_joint(self, data: GridData, y: torch.Tensor) -> torch.Tensor:
        """sum_a phi_a(y_a) + sum_E theta(y_a, y_b), batched over leading dims of y (..., H, W) -> (...)."""
        Th = self.Theta(data.phi)
        node = torch.gather(data.phi.expand(y.shape + (self.K,)), -1, y[..., None])[..., 0].sum((-2, -1))
        horizontal = Th[y[..., :, :-1], y[..., :, 1:]].sum((-2, -1))
        vertical = Th[y[..., :-1, :], y[..., 1:, :]].sum((-2, -1))
        return node + horizontal + vertical

    def _band_logits(self, data: GridData, y: torch.Tensor, band: Band, Th: torch.Tensor) -> torch.Tensor:
        """Channel-first logits of eq. 2 on the band's rows: (K, ..., r1 - r0, W) for y (..., H, W)."""
        H, W = data.shape
        r0, r1, a, b = band
        phi = data.phi_cf.reshape((self.K,) + (1,) * (y.dim() - 2) + (H, W))[..., r0:r1, :]
        return phi + halo_sum(Th[:, y[..., a:b, :]], band, H)          # Th[:, y_b][k] = theta(k, y_b)

    def conditional_logits(self, data: GridData, y: torch.Tensor) -> torch.Tensor:
        """(..., H, W, K) phi_a(k) + sum_{b in N(a)} theta(k, y_b) (eq. 2) for every pixel."""
        H = data.shape[0]
        return torch.movedim(self._band_logits(data, y, Band(0, H, 0, H), self.Theta(data.phi)), 0, -1)

    def _set_colour(self, data: GridData, y: torch.Tensor, black: bool, choose: Callable,
                    in_place: bool = False) -> torch.Tensor:
        """y with the pixels of one colour set to choose(logits (K, ..., rows, W), current (..., rows, W)), band by
        band (lattice.bands); in place is safe: a pixel's conditional reads only the other colour."""
        H, W = data.shape
        Th = self.Theta(data.phi)
        colour = checkerboard(H, W, device=y.device)
        colour = colour if black else ~colour
        out = y if in_place else torch.empty_like(y)
        for band in bands(H, self.K * W * int(np.prod(y.shape[:-2], dtype=np.int64))):
            r0, r1 = band.r0, band.r1
            current = y[..., r0:r1, :]
            new = choose(self._band_logits(data, y, band, Th), current)
            out[..., r0:r1, :] = torch.where(colour[r0:r1], new, current)
        return out

    # ------------------------------------------------------------------------------------------------
    # Simulation: the MRF as the posterior of a generative model (calibration)
    #   y ~ p(y) ∝ exp(sum_E theta(y_a, y_b)),   x_a | y_a ~ keep y_a with probability e^s / (e^s + K - 1), else one
    #   of the other K - 1 labels uniformly (s = node_strength), so that p(y | x) is eq. 1 with phi_a = s [x_a = k].

    def simulate(self, size: tuple[int, int], generator: torch.Generator) -> tuple[GibbsState, GridData]:
        """size = (H, W): y from the prior (exact draws by the transfer matrix; 500 checkerboard Gibbs sweeps on
        grids too wide for it) and x | y from the noise channel above."""
        H, W = size[:2]
        prior = GridData(torch.zeros(H, W, self.K, dtype=torch.float64), name="simulated")
        try:
            y = self.exact_sample(prior, 1, generator)[0]
        except ValueError:  # too wide for exact draws
            y = torch.randint(self.K, (H, W), generator=generator)
            for _ in range(500):
                y = self._gibbs_colour_sweep(prior, y, generator)
        return GibbsState(y), self.resimulate(GibbsState(y), prior, generator)

    def resimulate(self, state: GibbsState, data: GridData, generator: torch.Generator) -> GridData:
        """x | y from the noise channel (the clean image kept in the data, to score denoisings)."""
        y = state.y
        keep = 1.0 / (1.0 + (self.K - 1) * math.exp(-self.node_strength))
        other = (y + torch.randint(1, self.K, y.shape, generator=generator)) % self.K
        x = torch.where(torch.rand(y.shape, generator=generator, dtype=torch.float64) < keep, y, other)
        return as_grid_data(x, self.K, node_strength=self.node_strength, clean=y, name=data.name)

    # ------------------------------------------------------------------------------------------------
    # Gibbs (checkerboard-parallel) and ICM (the loops live in inference.gibbs and inference.em)

    gibbs_batched_chains = True

    def gibbs_init(self, data: GridData, generator: torch.Generator, num_chains: int | None = None) -> GibbsState:
        """Uniform random labels (one chain, or ``num_chains`` stacked on a leading dimension)."""
        lead = () if num_chains is None else (num_chains,)
        return GibbsState(torch.randint(self.K, lead + data.shape, generator=generator))

    def _gibbs_colour_sweep(self, data: GridData, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The black pixels given the white, then the white given the black (eq. 2, by the inverse CDF)."""
        def draw(logits, current):
            c = torch.cumsum(torch.exp(logits - logits.amax(0)), 0)
            u = torch.rand(c.shape[1:], generator=generator, dtype=c.dtype) * c[-1]
            return (c[:-1] < u).sum(0)                                 # k such that c_(k-1) < u <= c_k
        y = self._set_colour(data, y, True, draw)
        return self._set_colour(data, y, False, draw, in_place=True)

    def gibbs_sweep(self, data: GridData, state: GibbsState, generator: torch.Generator) -> GibbsState:
        """The black pixels given the white ones, then the white given the black (eq. 2), every chain at once."""
        return GibbsState(self._gibbs_colour_sweep(data, state.y, generator))

    def em_init(self, data: GridData, generator: torch.Generator) -> GibbsState:
        """ICM starts at the labels that maximise the node potentials (the noisy image itself when denoising)."""
        return GibbsState(torch.argmax(data.phi, -1))

    def em_update(self, data: GridData, state: GibbsState) -> GibbsState:
        """Iterated conditional modes: each colour set to the mode of eq. 2 given the other (ties keep the label);
        the log density never decreases, and a fixed point is a local mode (single-pixel changes)."""
        def mode(logits, current):
            top, best = logits.max(0)  # (max over dim 0 is much faster than argmax over it here)
            gain = top - torch.gather(logits, 0, current[None])[0]
            return torch.where(gain > 0, best, current)
        y = self._set_colour(data, state.y, True, mode)
        return GibbsState(self._set_colour(data, y, False, mode, in_place=True))

    # ------------------------------------------------------------------------------------------------
    # The Pyro model: one categorical site per pixel, the potentials through pyro.factor (small grids)

    def _check_pyro_size(self, data: GridData) -> None:
        H, W = data.shape
        if H * W > MAX_PYRO_PIXELS:
            raise ValueError(f"the per-pixel Pyro model is for small grids (at most {MAX_PYRO_PIXELS} pixels, "
                             f"exact enumeration); this grid has {H * W}")

    def model(self, data: GridData) -> None:
        """y_ij ~ Categorical(uniform) with infer enumerate, pyro.factor(phi_ij(y_ij)), pyro.factor(theta(y_a, y_b))
        per edge, and a factor H W log K that cancels the uniform categoricals: the model's unnormalised density is
        exactly eq. 1's, so its total mass is Z (TraceEnum_ELBO with an empty guide gives log Z)."""
        import pyro
        import pyro.distributions as dist

        self._check_pyro_size(data)
        H, W = data.shape
        K, Th = self.K, self.Theta(data.phi)
        uniform = torch.full((K,), 1.0 / K, dtype=data.dtype)
        y = {}
        for i in range(H):
            for j in range(W):
                y[i, j] = pyro.sample(f"y_{i}_{j}", dist.Categorical(uniform), infer={"enumerate": "parallel"})
                pyro.factor(f"phi_{i}_{j}", data.phi[i, j][y[i, j]])
                if j > 0:
                    pyro.factor(f"h_{i}_{j}", Th[y[i, j - 1], y[i, j]])
                if i > 0:
                    pyro.factor(f"v_{i}_{j}", Th[y[i - 1, j], y[i, j]])
        pyro.factor("uniform", torch.tensor(H * W * math.log(K), dtype=data.dtype))

    def to_pyro_sites(self, data: GridData, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"y": (H, W)} -> {"y_i_j": ()} for the Pyro model."""
        y = values["y"]
        return {f"y_{i}_{j}": y[..., i, j] for i in range(data.shape[0]) for j in range(data.shape[1])}

    def from_pyro_sites(self, data: GridData, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        H, W = data.shape
        return {"y": torch.stack([torch.stack([values[f"y_{i}_{j}"] for j in range(W)], -1) for i in range(H)], -2)}

    # The conditionals of the two colours, for check_model

    def conditional_model(self, data: GridData) -> None:
        self.model(data)

    def conditional_values(self, data: GridData, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.to_pyro_sites(data, warm_gibbs_state(self, data, generator)._asdict())

    def complete_conditionals(self, data: GridData, values: dict) -> dict[str, Conditional]:
        """Each colour of the checkerboard given the other (eq. 2), over the Pyro model's per-pixel sites."""
        y = self.from_pyro_sites(data, values)["y"]
        dist_all = torch.distributions.Categorical(logits=self.conditional_logits(data, y))
        black = checkerboard(*data.shape)
        out = {}
        for name, colour in (("black", black), ("white", ~black)):
            pixels = [(int(i), int(j)) for i, j in torch.nonzero(colour)]

            def sample(generator, colour=colour, black=name == "black"):
                def multinomial(logits, current):
                    probs = torch.softmax(torch.movedim(logits, 0, -1), -1)
                    return torch.multinomial(probs.reshape(-1, self.K), 1, generator=generator).reshape(current.shape)
                draw = self._set_colour(data, y, black, multinomial)
                return {f"y_{i}_{j}": draw[i, j] for i, j in torch.nonzero(colour).tolist()}

            def log_prob(v, pixels=pixels):
                new = y.clone()
                for i, j in pixels:
                    new[i, j] = v[f"y_{i}_{j}"]
                return sum(dist_all.log_prob(new)[i, j] for i, j in pixels)
            out[name] = Conditional(tuple(f"y_{i}_{j}" for i, j in pixels), sample, log_prob)
        return out

    # ------------------------------------------------------------------------------------------------
    # Label summaries (labels are ordered and identifiable: no switching)

    invariant_dims = {"onehot": ("pixel_label",), "log_joint": ()}

    def tracked_pixels(self, data: GridData, max_pixels: int = 400) -> torch.Tensor:
        """Flat indices of the pixels whose marginals are tracked across methods: all of them on grids of at most
        ``max_pixels``, else a fixed random subset (seed 0)."""
        n = data.shape[0] * data.shape[1]
        if n <= max_pixels:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:max_pixels].sort().values

    def invariants(self, data: GridData, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The one-hot labels of the tracked pixels (..., P K), whose means are the marginals, and the log density."""
        idx = self.tracked_pixels(data)
        flat = y.reshape(y.shape[:-2] + (-1,))[..., idx]
        onehot = torch.nn.functional.one_hot(flat, self.K).to(data.dtype)
        return {"onehot": onehot.reshape(onehot.shape[:-2] + (-1,)), "log_joint": self.log_joint(data, y)}

    def invariant_means(self, data: GridData, result: Any) -> dict[str, np.ndarray] | None:
        """The exact means of "onehot" under a result that stores marginals (exact, mean field, BP): the marginals
        of the tracked pixels; None for samplers (their means come from their draws)."""
        if "marginals" not in result.point:
            return None
        marg = torch.as_tensor(np.asarray(result.point["marginals"])).reshape(-1, self.K)[self.tracked_pixels(data)]
        return {"onehot": marg.reshape(-1).numpy()}

    def coords(self, data: GridData) -> dict[str, np.ndarray]:
        H, W = data.shape
        idx = self.tracked_pixels(data).tolist()
        return {"row": np.arange(H), "col": np.arange(W), "label": np.arange(self.K),
                "pixel_label": np.array([f"{p // W}:{p % W}={k}" for p in idx for k in range(self.K)])}

    def split(self, data: GridData, test_fraction: float, generator: torch.Generator):
        """No held-out part: the noisy image is the one observation; denoisings are scored against the clean image."""
        return data, data

    def heldout_score(self, result: Any, test: GridData, test_fraction: float) -> dict[str, float]:
        """Accuracy of the argmax of the result's marginals against the clean image (when known)."""
        if test.clean is None:
            return {}
        marginals = torch.as_tensor(marginals_of(result, self, test))
        if tuple(marginals.shape[:2]) != test.shape:
            raise ValueError(f"result: a fit of a {tuple(marginals.shape[:2])} grid cannot be scored on a {test.shape} "
                             "image")
        return {"accuracy": float((marginals.argmax(-1) == test.clean).double().mean())}


def marginals_of(result: Any, model: GridMRF, data: GridData) -> np.ndarray:
    """(H, W, K) marginals of any method's result: the exact, mean-field or BP marginals it stores, or the label
    frequencies of a sampler's draws."""
    if "marginals" in result.point:
        return np.asarray(result.point["marginals"])
    y = torch.as_tensor(np.asarray(result.posterior["y"])).flatten(0, 1)  # (S, H, W)
    return torch.stack([(y == k).sum(0) for k in range(model.K)], -1).numpy() / y.shape[0]  # (no (S, H, W, K) array)
