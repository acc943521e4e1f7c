"""Loopy belief propagation (sum-product, log domain) on grid MRFs: messages, the flooding and sequential
schedules, damping, beliefs and the Bethe free energy. Equations of the model: models/grid/model.py.

Messages arriving at every pixel from each side, log m, normalised (logsumexp over k = 0), 0 beyond the border:
from_left m_{(i,j-1)->(i,j)}, from_right, from_up m_{(i-1,j)->(i,j)}, from_down; stored channel-first (K, H, W).
    belief:   log b_a(k) = phi_a(k) + sum of the 4 incoming messages (normalised)                       (eq. B1)
    message:  log m_{a->b}(k') = logsumexp_k [cav_ab(k) + theta(k, k')],                                 (eq. B2)
              cav_ab = phi_a + sum_{c in N(a), c != b} log m_{c->a}  (the cavity of a without b)
    pairs:    log b_ab(k, k') = cav_ab(k) + theta(k, k') + cav_ba(k') - log Z_ab                          (eq. B3)
    Bethe free energy  F = - sum_a b_a . phi_a - sum_E b_ab . theta + sum_E b_ab . log b_ab
                           - sum_a (d_a - 1) b_a . log b_a,    with d_a the number of neighbours;           (eq. B4)
    -F approximates log Z and is exact on trees (chains included).
With P_a = exp(cav_ab - max) and E = exp(theta - max), eq. B2 is one K x K matrix product per message, log(E P_a)
up to a constant that the normalisation removes; and by eq. B3 the edge terms of eq. B4 are
    sum_kk' b_ab (log b_ab - theta) = b_a^(ab) . cav_ab + b_b^(ab) . cav_ba - log Z_ab,
with b_a^(ab) = P_a (E P_b) / Z_ab the pair's marginal on a, so no K x K table per edge is formed.
Flooding updates every message from the old ones at once (in bands of rows on large grids); sequential updates the rightward messages column by column
left to right (each from its just-updated left neighbour), then leftward, downward and upward: on a chain one
sequential iteration gives the exact marginals. Damping d: log m <- (1 - d) log m_new + d log m_old, renormalised.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from models.grid.lattice import bands, degrees

__all__ = ["Messages", "GridBP"]


class Messages(NamedTuple):
    """Log messages (K, H, W) arriving at every pixel from its left, right, upper and lower neighbour."""

    from_left: torch.Tensor
    from_right: torch.Tensor
    from_up: torch.Tensor
    from_down: torch.Tensor


def _normalise(log_m: torch.Tensor) -> torch.Tensor:
    return log_m - torch.logsumexp(log_m, 0)


# Each message family: the receiving pixels, the sending pixels, and the messages into the sender that its cavity
# leaves out (those from the receiver). Indices are on (K, H, W).
_ALL = slice(None)
ROUTES = {"from_left": ((_ALL, _ALL, slice(1, None)), (_ALL, _ALL, slice(None, -1)), "from_right"),
          "from_right": ((_ALL, _ALL, slice(None, -1)), (_ALL, _ALL, slice(1, None)), "from_left"),
          "from_up": ((_ALL, slice(1, None)), (_ALL, slice(None, -1)), "from_down"),
          "from_down": ((_ALL, slice(None, -1)), (_ALL, slice(1, None)), "from_up")}


class GridBP:
    """Loopy BP hooks of GridMRF (a mixin: reads K and Theta())."""

    bp_schedules = ("flooding", "sequential")

    def messages_init(self, data: Any) -> Messages:
        """Uniform messages (log 1/K; 0 beyond the border, where no message arrives)."""
        H, W, K = data.phi.shape
        out = {}
        for name, (to, _, _) in ROUTES.items():
            m = torch.zeros(K, H, W, dtype=data.dtype)
            m[to] = -torch.log(torch.tensor(float(K), dtype=data.dtype))
            out[name] = m
        return Messages(**out)

    def _E(self, data: Any) -> torch.Tensor:
        Th = self.Theta(data.phi)
        return torch.exp(Th - Th.max())

    @staticmethod
    def _send(cavity: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
        """eq. B2 for cavities (K, ...): log(E P) normalised, P = exp(cavity - max_k cavity); E symmetric."""
        P = torch.exp(cavity - cavity.amax(0))
        S = (E @ P.reshape(P.shape[0], -1)).reshape(P.shape).clamp_min(torch.finfo(P.dtype).tiny)
        return torch.log(S) - torch.log(S.sum(0))

    def _total(self, data: Any, m: Messages) -> torch.Tensor:
        H, W, K = data.phi.shape
        return data.phi_cf.reshape(K, H, W) + m.from_left + m.from_right + m.from_up + m.from_down

    def message_update(self, data: Any, m: Messages, schedule: str = "flooding",
                       damping: float = 0.0) -> tuple[Messages, float]:
        """One iteration of ``schedule``; returns the new messages and the largest change of a log message."""
        if schedule not in self.bp_schedules:
            raise ValueError(f"schedule must be one of {self.bp_schedules}, got {schedule!r}")
        if not 0.0 <= damping < 1.0:
            raise ValueError(f"damping must be in [0, 1), got {damping!r}")
        new = self._flooding(data, m, damping) if schedule == "flooding" else self._sequential(data, m, damping)
        K, H, W = m.from_left.shape
        change = max(float((a[:, r0:r1] - b[:, r0:r1]).abs().max()) for a, b in zip(new, m)
                     for r0, r1, _, _ in bands(H, K * W))
        return new, change

    @staticmethod
    def _damp(new: torch.Tensor, old: torch.Tensor, damping: float) -> torch.Tensor:
        return _normalise((1 - damping) * new + damping * old) if damping > 0 else new

    def _flooding(self, data: Any, m: Messages, damping: float) -> Messages:
        """Every message from the old ones (eq. B2), in bands of rows (lattice.bands)."""
        K, H, W = m.from_left.shape
        E = self._E(data)
        phi = data.phi_cf.reshape(K, H, W)
        new = Messages(*(torch.zeros_like(v) for v in m))  # 0 beyond the border

        def put(name, rows, cols, cavity):
            getattr(new, name)[:, rows, cols] = self._damp(self._send(cavity, E), getattr(m, name)[:, rows, cols],
                                                           damping)
        for r0, r1, a, b in bands(H, K * W):
            total = phi[:, a:b] + m.from_left[:, a:b] + m.from_right[:, a:b] + m.from_up[:, a:b] + m.from_down[:, a:b]
            own = slice(r0 - a, r1 - a)                                           # the band's rows within total
            put("from_left", slice(r0, r1), slice(1, None), total[:, own, :-1] - m.from_right[:, r0:r1, :-1])
            put("from_right", slice(r0, r1), slice(None, -1), total[:, own, 1:] - m.from_left[:, r0:r1, 1:])
            s0, e1 = max(r0, 1), min(r1, H - 1)       # rows with an upper / a lower neighbour
            if s0 < r1:
                put("from_up", slice(s0, r1), _ALL, total[:, s0 - 1 - a:r1 - 1 - a] - m.from_down[:, s0 - 1:r1 - 1])
            if r0 < e1:
                put("from_down", slice(r0, e1), _ALL, total[:, r0 + 1 - a:e1 + 1 - a] - m.from_up[:, r0 + 1:e1 + 1])
        return new

    def _sequential(self, data: Any, m: Messages, damping: float) -> Messages:
        """Rightward messages column by column from the left, then leftward, downward, upward (eq. B2), each from
        the messages updated so far."""
        H, W, K = data.phi.shape
        E = self._E(data)
        phi = data.phi_cf.reshape(K, H, W)
        msg = {k: v.clone() for k, v in m._asdict().items()}

        def send(name, to, frm, exclude):
            cavity = phi[frm] + sum(v[frm] for v in msg.values()) - msg[exclude][frm]
            msg[name][to] = self._damp(self._send(cavity, E), msg[name][to], damping)

        for j in range(1, W):  # (i, j-1) -> (i, j), left to right
            send("from_left", (_ALL, _ALL, j), (_ALL, _ALL, j - 1), "from_right")
        for j in range(W - 2, -1, -1):  # (i, j+1) -> (i, j), right to left
            send("from_right", (_ALL, _ALL, j), (_ALL, _ALL, j + 1), "from_left")
        for i in range(1, H):  # (i-1, j) -> (i, j), top to bottom
            send("from_up", (_ALL, i), (_ALL, i - 1), "from_down")
        for i in range(H - 2, -1, -1):  # (i+1, j) -> (i, j), bottom to top
            send("from_down", (_ALL, i), (_ALL, i + 1), "from_up")
        return Messages(**msg)

    def beliefs(self, data: Any, m: Messages) -> dict[str, torch.Tensor]:
        """{"marginals": b (H, W, K)} (eq. B1)."""
        return {"marginals": torch.softmax(self._total(data, m), 0).permute(1, 2, 0)}

    def _edge_cavities(self, data: Any, m: Messages) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """For the horizontal and vertical edges (a, b) (a left of / above b): the cavities cav_ab, cav_ba (K, ...)."""
        total = self._total(data, m)
        left, right = ROUTES["from_left"], ROUTES["from_up"]
        return {"horizontal": ((total - m.from_right)[left[1]], (total - m.from_left)[left[0]]),
                "vertical": ((total - m.from_down)[right[1]], (total - m.from_up)[right[0]])}

    def pairwise_beliefs(self, data: Any, m: Messages) -> dict[str, torch.Tensor]:
        """{"horizontal": (H, W-1, K, K), "vertical": (H-1, W, K, K)} log pairwise beliefs (eq. B3)."""
        Th = self.Theta(data.phi)
        out = {}
        for kind, (ca, cb) in self._edge_cavities(data, m).items():
            x = ca.permute(1, 2, 0)[..., :, None] + Th + cb.permute(1, 2, 0)[..., None, :]
            out[kind] = x - torch.logsumexp(x.flatten(-2), -1)[..., None, None]
        return out

    def bethe_free_energy(self, data: Any, m: Messages) -> torch.Tensor:
        """eq. B4 at the beliefs the messages imply, through matrix products (see the module docstring)."""
        H, W, K = data.phi.shape
        Th = self.Theta(data.phi)
        t = Th.max()
        E = torch.exp(Th - t)
        total = self._total(data, m)
        log_b = total - torch.logsumexp(total, 0)
        b = torch.exp(log_b)
        F = -(b * data.phi_cf.reshape(K, H, W)).sum() - ((degrees(H, W, dtype=b.dtype) - 1) * (b * log_b).sum(0)).sum()
        for ca, cb in self._edge_cavities(data, m).values():
            sa, sb = ca.amax(0), cb.amax(0)
            Pa, Pb = torch.exp(ca - sa), torch.exp(cb - sb)
            EPa = (E @ Pa.reshape(K, -1)).reshape(Pa.shape)
            EPb = (E @ Pb.reshape(K, -1)).reshape(Pb.shape)
            Z = (Pa * EPb).sum(0)
            F = F + ((Pa * EPb * ca).sum(0) / Z).sum() + ((Pb * EPa * cb).sum(0) / Z).sum() \
                - (torch.log(Z) + sa + sb + t).sum()
        return F
