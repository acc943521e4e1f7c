"""Registry entries of the Bayesian Gaussian mixtures: the MITx toy data, synthetic well-separated mixtures, user
files, calibration settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.registry import Calibration, DataSet, ModelSpec, register


def synthetic_spherical(rows: int, cols: int, true_K: int, generator) -> Any:
    """rows points in cols dimensions from BayesGMM(true_K, beta0=0.02, a0=b0=2): prior means spread
    1/sqrt(0.02) = 7 sds, so the components are well separated."""
    from models.mixture.spherical import BayesGMM

    return BayesGMM(K=true_K, beta0=0.02, a0=2.0, b0=2.0).sample(rows, cols, generator)[1]


def synthetic_full(rows: int, cols: int, true_K: int, generator) -> Any:
    from models.mixture.full import BayesGMMFull

    return BayesGMMFull(K=true_K, beta0=0.02).sample(rows, cols, generator)[1]


def load_toy() -> Any:
    """The MITx toy data: 250 points in 2-D."""
    from models.data import as_mixture_data
    from models.datasets import load_netflix

    return as_mixture_data(load_netflix("toy"), name="toy")


def read_file(path: Path) -> Any:
    """(n, d) points from a .npy file or whitespace-separated text; NaN marks a missing coordinate."""
    from models.readers import read_points_file

    return read_points_file(path)


TOY = DataSet("toy", load_toy, "MITx toy data, 250 points in 2-D")
FILES = ".npy or whitespace-separated points (NaN = missing)"

SPHERICAL = register(ModelSpec(
    name="bayes-gmm",
    model_class="models.mixture.spherical:BayesGMM",
    summary="Bayesian spherical Gaussian mixture (Dirichlet, Normal-Gamma; missing entries allowed)",
    hyperparameters=("alpha0", "m0", "beta0", "a0", "b0"),
    synthetic=synthetic_spherical,
    synthetic_size=(100, 2),
    synthetic_help="points x dimensions",
    datasets=(TOY,),
    compare_figures="inference.workflows.relabel:mixture_report",
    read_file=read_file,
    file_help=FILES,
    default_K=3,
    calibration=Calibration(size=(10, 1), warmup=100, thin=3),
))

FULL = register(ModelSpec(
    name="bayes-gmm-full",
    model_class="models.mixture.full:BayesGMMFull",
    summary="Bayesian full-covariance Gaussian mixture (Dirichlet, Normal-Wishart; complete data)",
    hyperparameters=("alpha0", "m0", "beta0", "w0", "nu0"),
    synthetic=synthetic_full,
    synthetic_size=(100, 2),
    synthetic_help="points x dimensions",
    datasets=(TOY,),
    compare_figures="inference.workflows.relabel:mixture_report",
    read_file=read_file,
    file_help=".npy or whitespace-separated points (complete)",
    default_K=3,
    calibration=Calibration(size=(10, 2), warmup=100, thin=3),
))
