"""Exact inference on grid MRFs: by brute force on tiny grids, and by a row-by-row transfer matrix on narrow ones.

Transfer matrix (models/grid/model.py eq. 1): take the shorter side as the width W (the grid is transposed
otherwise) and let s in {0..K^W - 1} enumerate the labels of one row. With
    U_i(s) = sum_j phi_ij(s_j) + sum_j theta(s_j, s_j+1)      (row i's node and horizontal-edge terms)
    T(s, s') = sum_j theta(s_j, s'_j)                          (the vertical edges between consecutive rows)
the forward and backward recursions (log domain)
    alpha_0 = U_0,   alpha_i(s') = U_i(s') + logsumexp_s [alpha_{i-1}(s) + T(s, s')]                    (eq. E1)
    beta_{H-1} = 0,  beta_i(s) = logsumexp_s' [T(s, s') + U_{i+1}(s') + beta_{i+1}(s')]                   (eq. E2)
give log Z = logsumexp_s alpha_{H-1}(s), the row-state marginals p_i(s) = exp(alpha_i + beta_i - log Z) and the
consecutive-row pairs p_i(s, s') ∝ exp(alpha_i(s) + T(s, s') + U_{i+1}(s') + beta_{i+1}(s')) (eq. E3), from which
the pixel and edge marginals are sums. Exact draws: s_{H-1} ~ p_{H-1}, then s_i | s_{i+1} ∝ exp(alpha_i(s) +
T(s, s_{i+1})) (forward filtering, backward sampling). Cost O(H K^(2W)): W up to about 12 for K = 2.
"""

from __future__ import annotations

from typing import Any

import torch

from models.conjugate import sample_categorical

__all__ = ["GridExact", "MAX_STATES", "MAX_BRUTE_FORCE"]

MAX_STATES = 4096          # K^W row states of the transfer matrix (a K^W x K^W table of 134 MB in float64)
MAX_BRUTE_FORCE = 1 << 20  # K^(H W) configurations enumerated by brute force


def _digits(n_states: int, W: int, K: int) -> torch.Tensor:
    """(n_states, W) the labels of every row state, s = sum_j s_j K^(W-1-j)."""
    s = torch.arange(n_states)
    powers = K ** torch.arange(W - 1, -1, -1)
    return (s[:, None] // powers[None, :]) % K


def _logmatmul(a: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """log(exp(a) @ exp(T)) for a (..., n), T (n, m), stably (shifted by the maxima)."""
    ca = a.max(-1, keepdim=True).values
    cT = T.max()
    return torch.log(torch.exp(a - ca) @ torch.exp(T - cT)) + ca + cT


class GridExact:
    """Exact marginals, log Z and exact draws (a mixin of GridMRF: reads K and Theta())."""

    def _oriented(self, data: Any) -> tuple[torch.Tensor, bool]:
        """phi with the shorter side as the width, and whether it was transposed."""
        H, W = data.shape
        return (data.phi.transpose(0, 1), True) if W > H else (data.phi, False)

    def _transfer(self, data: Any) -> dict[str, torch.Tensor]:
        phi, transposed = self._oriented(data)
        H, W, K = phi.shape
        n = K ** W
        if n > MAX_STATES:
            gib = n * n * 8 / 2 ** 30
            raise ValueError(f"exact inference: a {data.shape[0]} x {data.shape[1]} grid with K={K} needs K^{W} = {n} "
                             f"row states (a {n} x {n} transfer matrix, {gib:.1f} GiB); the limit is {MAX_STATES}")
        Th = self.Theta(phi)
        d = _digits(n, W, K).to(phi.device)
        U = phi[:, torch.arange(W)[None, :], d].sum(-1)                      # (H, n) node terms
        if W > 1:
            U = U + Th[d[:, :-1], d[:, 1:]].sum(-1)[None]                    # horizontal edges within a row
        T = torch.zeros(n, n, dtype=phi.dtype, device=phi.device)
        for j in range(W):                                                   # vertical edges between rows
            T += Th[d[:, j]][:, d[:, j]]
        alpha = [U[0]]
        for i in range(1, H):
            alpha.append(U[i] + _logmatmul(alpha[-1], T))                     # eq. E1
        beta = [torch.zeros(n, dtype=phi.dtype, device=phi.device)]
        for i in range(H - 2, -1, -1):
            beta.append(_logmatmul((U[i + 1] + beta[-1])[None], T.T)[0])     # eq. E2
        beta = beta[::-1]
        log_Z = torch.logsumexp(alpha[-1], 0)
        return {"alpha": torch.stack(alpha), "beta": torch.stack(beta), "U": U, "T": T, "digits": d,
                "log_Z": log_Z, "transposed": transposed, "W": W}

    def log_partition(self, data: Any) -> torch.Tensor:
        """log Z by the transfer matrix (eq. E1)."""
        return self._transfer(data)["log_Z"]

    def exact_marginals(self, data: Any, pairwise: bool = False) -> dict[str, torch.Tensor]:
        """{"marginals": (H, W, K), "log_Z": ()} and, with ``pairwise``, {"horizontal": (H, W-1, K, K), "vertical": (H-1, W, K, K)}
        (pairs of 4-neighbours), by the transfer matrix."""
        t = self._transfer(data)
        K = self.K
        onehot = torch.nn.functional.one_hot(t["digits"], K).to(t["U"].dtype)   # (n, W, K)
        p_rows = torch.exp(t["alpha"] + t["beta"] - t["log_Z"])                   # (H, n)
        marg = torch.einsum("is,swk->iwk", p_rows, onehot)
        out = {"marginals": marg, "log_Z": t["log_Z"]}
        if pairwise:
            within = torch.einsum("is,swk,swl->iwkl", p_rows, onehot[:, :-1], onehot[:, 1:])
            across = []
            for i in range(t["alpha"].shape[0] - 1):                              # eq. E3
                log_pair = t["alpha"][i][:, None] + t["T"] + (t["U"][i + 1] + t["beta"][i + 1])[None, :] - t["log_Z"]
                across.append(torch.einsum("st,swk,twl->wkl", torch.exp(log_pair), onehot, onehot))
            across = torch.stack(across) if across else within.new_zeros((0,) + within.shape[1:])
            # in a transposed grid, pairs within a row are the original's vertical pairs (same pixel order)
            horizontal, vertical = (across.transpose(0, 1), within.transpose(0, 1)) if t["transposed"] \
                else (within, across)
            out.update(horizontal=horizontal, vertical=vertical)
        if t["transposed"]:
            out["marginals"] = marg.transpose(0, 1)
        return out

    def exact_sample(self, data: Any, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """num_samples exact draws (S, H, W) by forward filtering, backward sampling."""
        t = self._transfer(data)
        alpha, T, d = t["alpha"], t["T"], t["digits"]

        states = [sample_categorical(alpha[-1].expand(num_samples, -1), generator)]
        for i in range(alpha.shape[0] - 2, -1, -1):
            states.append(sample_categorical(alpha[i][None, :] + T[:, states[-1]].T, generator))
        rows = d[torch.stack(states[::-1], 1)]                                     # (S, H', W')
        return rows.transpose(1, 2) if t["transposed"] else rows

    def brute_force(self, data: Any) -> dict[str, torch.Tensor]:
        """log Z and the marginals by enumerating every labelling (tiny grids): {"log_Z", "marginals"}."""
        H, W = data.shape
        K = self.K
        if K ** (H * W) > MAX_BRUTE_FORCE:
            raise ValueError(f"brute force: K^(H W) = {K}^{H * W} labellings exceed {MAX_BRUTE_FORCE}")
        y = _digits(K ** (H * W), H * W, K).reshape(-1, H, W).to(data.phi.device)
        lj = self.log_joint(data, y)
        log_Z = torch.logsumexp(lj, 0)
        w = torch.exp(lj - log_Z)
        marg = torch.einsum("c,chwk->hwk", w, torch.nn.functional.one_hot(y, K).to(lj.dtype))
        return {"log_Z": log_Z, "marginals": marg}
