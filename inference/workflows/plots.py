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


def plot_denoising(comparison, model, out: Path) -> list[Path]:
    """Grid MRFs (the compare_figures of grid-mrf): the clean image (when known), the noisy image and the argmax of
    every method's marginals, with each method's accuracy against the clean image; and the objective per
    iteration of every method."""
    use_agg()
    import matplotlib.pyplot as plt

    from models.grid.model import marginals_of

    data = next(iter(comparison.results.values())).data
    panels = ([("clean", np.asarray(data.clean))] if data.clean is not None else []) + \
        ([("noisy x", np.asarray(data.x))] if data.x is not None else [])
    for name, res in comparison.results.items():
        labels = marginals_of(res, model, data).argmax(-1)
        acc = f", accuracy {float((labels == np.asarray(data.clean)).mean()):.4f}" if data.clean is not None else ""
        panels.append((f"{name}{acc}", labels))
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image, cmap="viridis", vmin=0, vmax=model.K - 1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    files = [save_figure(fig, Path(out) / "denoising.png", close=True)]
    fig, (ax, gap) = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in comparison.results.items():
        obj = np.asarray(res.trace["objective"])
        if obj.ndim == 1 and len(obj) > 1 and res.attrs.get("objective_name") != "log_joint":
            label = f"{name}: {res.attrs.get('objective_name')}"
            ax.plot(np.arange(len(obj)), obj, marker=".", ms=3, label=label)
            gap.semilogy(np.arange(len(obj) - 1), np.maximum(np.abs(obj[:-1] - obj[-1]), 1e-16), marker=".", ms=3,
                         label=label)
        elif res.method == "exact":
            ax.axhline(float(obj[-1]), color="k", ls="--", lw=0.8, label="exact log Z")
    ax.set(xlabel="iteration (sweep)", ylabel="objective", title="ELBO, -Bethe free energy and log Z")
    gap.set(xlabel="iteration (sweep)", ylabel="|objective - final objective|", title="convergence")
    ax.legend(fontsize=7)
    files.append(save_figure(fig, Path(out) / "objectives.png", close=True))
    return files
