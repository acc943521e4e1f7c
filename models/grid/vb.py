"""Mean field for grid MRFs: the variational family (one type for CAVI and the Pyro guide), the ELBO and the CAVI
sweeps. Equations: models/grid/model.py.

Family: q(y) = prod_a Cat(y_a; lambda_a), stored as log lambda (H, W, K) (normalised log-probabilities, read through
log_softmax so that the ELBO is a function of unconstrained tensors).
ELBO = sum_a lambda_a . phi_a + sum_{(a,b) in E} lambda_a^T theta lambda_b - sum_a lambda_a . log lambda_a  (eq. M1)
     <= log Z, with equality iff p factorises.
Update (eq. 3): log lambda_a = log_softmax(phi_a + (sum_{b in N(a)} lambda_b) theta). Pixels of one colour of the
checkerboard share no edge, so a colour is one exact block update ("black", "white"); the course's schedule instead
visits the pixels one at a time in raster order, in place, from lambda = 1/K (schedule="raster").
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from models.conjugate import sample_categorical
from models.grid.lattice import bands, checkerboard, halo_sum

__all__ = ["GridQ", "GridCaviState", "GridMeanField"]


class GridQ(NamedTuple):
    """q(y) = prod_a Cat(lambda_a): log_lam (H, W, K)."""

    log_lam: torch.Tensor

    def sample(self, num_samples: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """{"y": (S, H, W)} independent draws of every pixel."""
        return {"y": sample_categorical(self.log_lam.expand((num_samples,) + self.log_lam.shape), generator)}

    def mean(self) -> dict[str, torch.Tensor]:
        """The marginals lambda (H, W, K)."""
        return {"marginals": torch.softmax(self.log_lam, -1)}

    def log_prob(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        y = torch.as_tensor(draws["y"]).long()
        log_lam = torch.log_softmax(self.log_lam, -1)
        return torch.gather(log_lam.expand(y.shape + log_lam.shape[-1:]), -1, y[..., None])[..., 0].sum((-2, -1))

    def to_guide(self) -> dict[str, torch.Tensor]:
        return {"logits": self.log_lam}

    @classmethod
    def from_guide(cls, params: dict[str, torch.Tensor]) -> GridQ:
        return cls(torch.log_softmax(torch.as_tensor(params["logits"]), -1))

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"log_lam": self.log_lam}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> GridQ:
        return cls(torch.as_tensor(params["log_lam"]))


class GridCaviState(NamedTuple):
    """q, with its arrays channel-first for the block updates (reductions over the K labels are cheap there):
    log lambda and lambda, (K, H, W)."""

    params: GridQ
    log_lam: torch.Tensor
    lam: torch.Tensor


def _state(log_lam_cf: torch.Tensor, lam_cf: torch.Tensor | None = None) -> GridCaviState:
    lam_cf = torch.exp(log_lam_cf) if lam_cf is None else lam_cf
    return GridCaviState(GridQ(log_lam_cf.permute(1, 2, 0)), log_lam_cf, lam_cf)


class GridMeanField:
    """The CAVI and SVI hooks of GridMRF (a mixin: reads K, Theta(), and the model's Pyro sites)."""

    family = GridQ
    cavi_blocks = ("black", "white")
    cavi_options = {"schedule": ("checkerboard", "raster"), "init": ("uniform", "node")}

    def _elbo_cf(self, data: Any, log_lam: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """eq. M1 from normalised log lambda and lambda, channel-first (K, H, W)."""
        K, H, W = lam.shape
        G = (self.Theta(data.phi) @ lam.reshape(K, H * W)).reshape(K, H, W)
        energy = (lam * data.phi_cf.reshape(K, H, W)).sum() + (G[:, :, :-1] * lam[:, :, 1:]).sum() \
            + (G[:, :-1] * lam[:, 1:]).sum()
        return energy - (lam * log_lam).sum()

    def elbo(self, data: Any, q: GridQ) -> torch.Tensor:
        """eq. M1, every constant included (differentiable in q's log lambda)."""
        log_lam = torch.log_softmax(q.log_lam, -1).permute(2, 0, 1)
        return self._elbo_cf(data, log_lam, torch.exp(log_lam))

    def cavi_state_elbo(self, data: Any, state: GridCaviState) -> torch.Tensor:
        return self.elbo(data, state.params)

    def cavi_init(self, data: Any, generator: torch.Generator, *, init: str = "uniform", **_) -> GridCaviState:
        """init="uniform": lambda = 1/K (the course's); "node": lambda_a ∝ exp(phi_a)."""
        H, W, K = data.phi.shape
        phi = data.phi_cf.reshape(K, H, W)
        return _state(torch.log_softmax(phi, 0) if init == "node" else torch.full_like(phi, -math.log(K)))

    def cavi_initial_elbo(self, data: Any, state: GridCaviState, **_) -> torch.Tensor:
        return self.elbo(data, state.params)

    def _colour(self, data: Any, log_lam: torch.Tensor, lam: torch.Tensor, block: str, *,
                in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block update of one colour (eq. 3) on channel-first log lambda and lambda (K, H, W): new arrays (or
        the given ones, updated in place), and the log normalisers logsumexp_k(phi_a + field_a) (H, W).
        Whole rows (shifted slices; the other colour is kept), cheaper here than gathering one colour's pixels, in
        bands of rows (lattice.bands). In place is safe: a pixel's field reads only the other colour."""
        K, H, W = lam.shape
        Th = self.Theta(data.phi)
        phi = data.phi_cf.reshape(K, H, W)
        colour = checkerboard(H, W, device=phi.device)
        colour = colour if block == "black" else ~colour
        out_log, out_lam = (log_lam, lam) if in_place else (torch.empty_like(log_lam), torch.empty_like(lam))
        lse = torch.empty(H, W, dtype=phi.dtype, device=phi.device)
        for band in bands(H, K * W):
            r0, r1, a, b = band
            G = (Th @ lam[:, a:b].reshape(K, -1)).reshape(K, b - a, W)          # sum_k2 theta(k, k2) lambda_b(k2)
            logits = phi[:, r0:r1] + halo_sum(G, band, H)
            lse[r0:r1] = torch.logsumexp(logits, 0)
            new = logits - lse[r0:r1]                                                # eq. 3
            c = colour[r0:r1]
            out_log[:, r0:r1] = torch.where(c, new, log_lam[:, r0:r1])
            out_lam[:, r0:r1] = torch.where(c, torch.exp(new), lam[:, r0:r1])
        return out_log, out_lam, lse

    def cavi_block(self, data: Any, state: GridCaviState, block: str) -> GridCaviState:
        """"black" or "white": every pixel of that colour at once (eq. 3)."""
        if block not in self.cavi_blocks:
            raise ValueError(f"block must be one of {self.cavi_blocks}, got {block!r}")
        return _state(*self._colour(data, state.log_lam, state.lam, block)[:2])

    def cavi_update(self, data: Any, state: GridCaviState, *, schedule: str = "checkerboard",
                    **_) -> tuple[GridCaviState, torch.Tensor]:
        """One sweep: the two colours ("checkerboard"), or every pixel in raster order, in place ("raster", the
        course's: O(H W) small steps); then the ELBO (eq. M1).

        After a checkerboard sweep the ELBO costs little: every edge has one white end, whose field the white update
        has just computed from the final black lambda, so the edge energy plus the white pixels' node energy and
        entropy is sum over white a of logsumexp_k(phi_a + field_a); the black pixels add lambda . (phi - log lambda)."""
        if schedule == "raster":
            state = _state(self._raster_sweep(data, state.params.log_lam).permute(2, 0, 1).contiguous())
            return state, self._elbo_cf(data, state.log_lam, state.lam)
        K, H, W = state.lam.shape
        log_lam, lam, _ = self._colour(data, state.log_lam, state.lam, "black")
        log_lam, lam, lse = self._colour(data, log_lam, lam, "white", in_place=True)  # our own arrays
        black = checkerboard(H, W, device=lse.device)
        phi = data.phi_cf.reshape(K, H, W)
        elbo = lse.new_zeros(())
        for r0, r1, _, _ in bands(H, K * W):
            black_terms = (lam[:, r0:r1] * (phi[:, r0:r1] - log_lam[:, r0:r1])).sum(0)
            elbo = elbo + torch.where(black[r0:r1], black_terms, lse[r0:r1]).sum()
        return _state(log_lam, lam), elbo

    def _raster_sweep(self, data: Any, log_lam: torch.Tensor) -> torch.Tensor:
        H, W = data.shape
        lam = torch.exp(log_lam).clone()
        Th = self.Theta(data.phi)
        for i in range(H):
            for j in range(W):
                field = torch.zeros(self.K, dtype=lam.dtype)
                for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                    if 0 <= a < H and 0 <= b < W:
                        field = field + lam[a, b]
                lam[i, j] = torch.softmax(data.phi[i, j] + Th @ field, -1)                       # eq. 3
        return torch.log(lam)

    def objective_attrs(self, data: Any, elbo: float) -> dict[str, float]:
        return {"elbo": float(elbo)}

    # ------------------------------------------------------------------------------------------------
    # SVI: the mean-field guide, its sites enumerated (TraceEnum_ELBO sums over them exactly); small grids

    svi_elbo = "enum"

    @property
    def guide_constraints(self) -> dict[str, Any]:
        return {"logits": torch.distributions.constraints.real}

    def guide_init(self, data: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.cavi_init(data, generator).params.to_guide()

    def guide(self, data: Any, params: dict[str, torch.Tensor]) -> None:
        import pyro
        import pyro.distributions as dist

        self._check_pyro_size(data)
        H, W = data.shape
        for i in range(H):
            for j in range(W):
                pyro.sample(f"y_{i}_{j}", dist.Categorical(logits=params["logits"][i, j]),
                            infer={"enumerate": "parallel"})
