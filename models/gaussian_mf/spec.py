"""Registry entry of Gaussian MF: MovieLens-100K folds, synthetic low-rank ratings, user files, calibration
settings, and the fit report (held-out RMSE on the fold's test set, recommendations with titles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.registry import FILE_OPTIONS, Calibration, DataSet, ModelSpec, Option, register


def synthetic(rows: int, cols: int, true_K: int, generator) -> Any:
    """A rank-true_K matrix plus N(0, 0.5^2) noise around 3, half of its entries observed."""
    import torch

    from models.data import as_rating_data

    U = torch.randn(rows, true_K, generator=generator, dtype=torch.float64)
    V = torch.randn(cols, true_K, generator=generator, dtype=torch.float64)
    R = 3.0 + U @ V.T / true_K ** 0.5 + 0.5 * torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    R[torch.rand(R.shape, generator=generator) < 0.5] = float("nan")
    return as_rating_data(R, name=f"synthetic {rows}x{cols}")


def _fold(fold: int) -> int:
    if not 1 <= fold <= 5:
        raise ValueError(f"--fold must be 1..5, got {fold}")
    return fold


def load_movielens(fold: int = 1) -> Any:
    """The training part of an official MovieLens-100K fold (u<fold>.base)."""
    from models.data import as_rating_data
    from models.datasets import load_movielens_100k

    train, _ = load_movielens_100k().folds[_fold(fold) - 1]
    return as_rating_data(train, name=f"movielens-100k u{fold}.base", rating_range=(1, 5))


def _rating_range(values: list[float]) -> tuple[float, float]:
    lo, hi = values
    if not lo < hi:
        raise ValueError(f"--rating-range expects LO HI with LO < HI, got {lo:g} {hi:g}")
    return float(lo), float(hi)


def read_file(path: Path, columns: tuple[str, str, str] | None = None, header: bool = True,
              rating_range: tuple[float, float] | None = None) -> Any:
    """Ratings from a .csv in long format (a header naming the row, col and value columns; IDs are labels) or a
    .npy / text dense matrix with NaN for unobserved entries (zeros are ratings); with ``rating_range`` a rating
    outside it is an error (models.readers.read_rating_file). Without it, the observed range is printed."""
    import sys

    from models.readers import read_rating_file

    data = read_rating_file(path, columns=columns, header=header, rating_range=rating_range)
    if rating_range is None:
        v = data.values
        print(f"note: {path.name}: ratings from {float(v.min()):g} to {float(v.max()):g} (no --rating-range given, "
              "so none is checked)", file=sys.stderr)
    return data


def fit_report(model: Any, data: Any, result: Any, context: dict) -> list[str]:
    """On a MovieLens fold: RMSE and log predictive density on the fold's test set; --recommend USER: top 10."""
    if context.get("data") != "movielens-100k":
        return []
    import pandas as pd

    from models.data import as_rating_data
    from models.datasets import load_movielens_100k
    from models.gaussian_mf.prediction import heldout_scores, recommend

    fold = context["data_options"].get("fold", 1)
    ml = load_movielens_100k()
    test = as_rating_data(ml.folds[fold - 1][1])
    score = heldout_scores(model, data, result, test)
    lines = [f"  u{fold}.test: RMSE {score['test_rmse']:.4f}, log predictive density per rating "
             f"{score['heldout_lpd_per_rating']:.4f}"]
    user = context["report_options"].get("recommend")
    if user is not None:
        top = recommend(model, data, result, user, n=10, titles=ml.titles)
        lines.append(f"top 10 for user {user} (0-based; MovieLens id {user + 1}), unrated items:")
        with pd.option_context("display.width", 200, "display.precision", 3):
            lines.append(top.to_string(index=False))
    return lines


SPEC = register(ModelSpec(
    name="gaussian-mf",
    model_class="models.gaussian_mf.model:GaussianMF",
    summary="Gaussian Bayesian matrix factorisation of ratings (MovieLens-100K; fixed or BPMF prior)",
    hyperparameters=("alpha", "sigma_U", "sigma_V", "beta0", "w0"),
    synthetic=synthetic,
    synthetic_size=(20, 30),
    synthetic_help="rows x columns, half of the entries observed",
    datasets=(DataSet("movielens-100k", load_movielens, "MovieLens-100K, the training part of fold --fold"),),
    compare_figures="inference.workflows.relabel:gaussian_factor_report",
    read_file=read_file,
    file_help=".csv or .parquet long format (header row,col,value or --columns; IDs are labels) or .npy / text dense "
              "ratings (NaN = unobserved); --rating-range LO HI checks them",
    default_K=3,
    options=(
        Option("--prior", "prior", "prior on the factors: bpmf (Normal-Wishart hyperpriors) or fixed (the course's)",
               choices=("bpmf", "fixed")),
        Option("--noise-prior", "noise_prior", "Gamma(A, B) prior on the noise precision (Gibbs samples it)",
               type=float, nargs=2, metavar=("A", "B"), convert=tuple),
        Option("--fold", "fold", "movielens-100k: official fold 1..5", target="data", type=int),
        Option("--recommend", "recommend", "movielens-100k: print the top 10 unrated movies for this 0-based user, "
               "with posterior sd, predictive sd and a 90%% interval", target="report", type=int, metavar="USER"),
        Option("--rating-range", "rating_range", "user files: the rating scale LO HI (a rating outside is an error)",
               target="file", type=float, nargs=2, metavar=("LO", "HI"), convert=_rating_range),
        *FILE_OPTIONS,
    ),
    calibration=Calibration(size=(4, 3, 0.7), warmup=100, thin=2,
                            model_options={"prior": "fixed", "center": False, "noise_prior": (3.0, 1.0)}),
    fit_report=fit_report,
    benchmark_options={"prior": "fixed", "noise_prior": (3.0, 1.0)},  # the model every method (SVI too) fits
))
