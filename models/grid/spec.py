"""Registry entry of the grid MRF: the course's 3 x 3 example, spirals, synthetic problems, calibration settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.registry import Calibration, DataSet, ModelSpec, Option, register


def load_small() -> Any:
    """The course's `small` example: 3 x 3, x = [[0,0,0],[0,0,0],[1,1,1]] (K = 2)."""
    from models.grid.images import COURSE_SMALL

    return {"x": COURSE_SMALL, "name": "small"}


def load_spiral(K: int = 5, size: int = 256, noise: float = 0.2, seed: int = 0) -> Any:
    """K interleaved spiral arms on size x size, a ``noise`` fraction of the pixels replaced by a uniform random
    label (fixed seed); the clean spiral is kept to score the denoising."""
    import torch

    from models.grid.images import add_noise, spiral

    clean = spiral(size, K)
    x = add_noise(clean, K, noise, torch.Generator().manual_seed(seed))
    return {"x": x, "clean": clean, "name": f"spiral {size}x{size}, {noise:.0%} noise"}


def synthetic(rows: int, cols: int, true_K: int, generator) -> Any:
    """A labelling drawn from a Potts prior (K = 2, J = 0.8: patches, below the ordering transition) and its noisy
    image (each label kept with probability e^1.5 / (e^1.5 + 1) = 0.82; see GridMRF.simulate). (The course's
    potentials would give a constant labelling and no noise.)"""
    from models.grid.model import GridMRF

    return GridMRF(K=2, theta=0.8, node_strength=1.5).simulate((rows, cols), generator)[1]


def read_file(path: Path) -> Any:
    """A .npy (H, W) integer label image, or an (H, W, K) table of node log-potentials (checked by the model)."""
    import numpy as np

    from models.readers import ReaderError

    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ReaderError(f"{path}: cannot read a .npy array ({exc})") from None


SPEC = register(ModelSpec(
    name="grid-mrf",
    model_class="models.grid.model:GridMRF",
    summary="pairwise Markov random field on a grid (Potts / Ising; image denoising)",
    hyperparameters=("node_strength", "theta"),  # theta=J: the Potts table J [k1 = k2]
    synthetic=synthetic,
    synthetic_size=(3, 4),  # (SVI enumerates every pixel: about 0.05 s a step here, 0.14 s at 6 x 6)
    synthetic_help="rows x columns",
    datasets=(DataSet("small", load_small, "the course's 3 x 3 example (K = 2)", default_K=2,
                      methods=("exact", "cavi", "bp", "gibbs", "svi", "em")),
              DataSet("spiral", load_spiral, "K interleaved spiral arms with 20% noise (--size, --noise)",
                      default_K=5, methods=("cavi", "bp", "gibbs", "em"))),
    read_file=read_file,
    file_help=".npy (H, W) label image or (H, W, K) node log-potentials",
    default_K=2,
    options=(Option("--size", "size", "spiral: image side in pixels (default 256)", target="data", type=int),
             Option("--noise", "noise", "spiral: fraction of the pixels replaced by a random label (default 0.2)",
                    target="data", type=float),
             Option("--schedule", "schedule", "mean field (CAVI): checkerboard (default) or raster (the course's "
                    "order, in place; for small grids)", target="cavi", choices=("checkerboard", "raster"))),
    # weak potentials (Potts J = 0.5, node strength 1): with the course's the posterior is all but a point mass and
    # the prior's labellings all but constant, so SBC, Geweke and the Monte Carlo ELBO would test nothing
    calibration=Calibration(size=(3, 4), warmup=20, thin=2, model_options={"theta": 0.5, "node_strength": 1.0}),
    compare_methods=("exact", "cavi", "bp", "gibbs", "svi", "em"),
    compare_settings={"gibbs": {"num_samples": 500, "warmup": 100, "num_chains": 2},
                      "cavi": {"num_iters": 200, "tol": 1e-12}, "bp": {"num_iters": 200}, "em": {"num_iters": 100},
                      "svi": {"num_iters": 400, "lr": 0.5}},  # (logits of ~1e-15 marginals are far from 0)
    compare_figures="inference.workflows.plots:plot_denoising",
))
