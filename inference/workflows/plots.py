"""Plots that users compare with the course's figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models._io import atomic_path

__all__ = ["plot_mixture", "save_figure", "use_agg"]


def use_agg() -> None:
    """Select matplotlib's file-only backend unless the user chose one (scripts and servers have no screen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110, close: bool = False) -> Path:
    """Save a matplotlib figure atomically (a temporary file renamed into place); ``close`` closes it after."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def plot_mixture(X: np.ndarray, mixture, post: np.ndarray, title: str = "", ax=None):
    """The course's mixture plot for 2-D data: each point drawn as a small pie of its soft assignments,
    one circle of radius sd = sqrt(var_j) around each mean, legend with mean and sd.

    Args:
        X: (n, 2) points; mixture: (mu (K, 2), var (K,), p (K,)); post: (n, K) responsibilities.

    Returns:
        the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Wedge

    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"plot_mixture draws 2-D data; X has shape {X.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 6))
    else:
        fig = ax.figure
    K = len(mixture.p)
    colors = plt.get_cmap("tab10")(np.arange(K) % 10)
    span = np.ptp(X, axis=0).max()
    r = 0.015 * span
    for x, w in zip(X, post):
        start = 0.0
        for j in range(K):
            if w[j] > 1e-3:
                ax.add_patch(Wedge(x, r, start, start + 360 * w[j], facecolor=colors[j], edgecolor="none"))
            start += 360 * w[j]
    for j in range(K):
        sd = np.sqrt(mixture.var[j])
        ax.add_patch(Circle(mixture.mu[j], sd, fill=False, color=colors[j], lw=1.5))
        ax.plot([], [], color=colors[j], label=f"mu = ({mixture.mu[j][0]:.2f}, {mixture.mu[j][1]:.2f}), sd = {sd:.2f}")
    lo, hi = X.min(0) - 0.1 * span, X.max(0) + 0.1 * span
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), aspect="equal", title=title)
    ax.legend(fontsize=7, loc="upper left")
    return fig
