"""Registry entry of Poisson MF: data sets, synthetic problems, user files, calibration settings, the fit report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from models.registry import FILE_OPTIONS, Calibration, DataSet, ModelSpec, Option, register


def synthetic(rows: int, cols: int, true_K: int, generator) -> Any:
    """Counts from PoissonMF(true_K, a = b = 1): a small problem every method fits in seconds."""
    from models.poisson_mf.model import PoissonMF

    truth = PoissonMF(K=true_K, a_theta=1.0, b_theta=1.0, a_eta=1.0, b_eta=1.0)
    return truth.sample(rows, cols, generator)[1]


def load_lastfm() -> Any:
    """LastFM (999 x 2,000 counts); the loader's warning about the malformed record is passed on as a note."""
    from models.datasets import load_lastfm as load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load()
    for w in caught:
        print(f"note: {w.message}", file=__import__("sys").stderr)
    return data


def read_file(path: Path, columns: tuple[str, str, str] | None = None, header: bool = True) -> Any:
    """A .csv in long format (a header naming the row, col and value columns; IDs are labels) or a .npy / text
    dense count matrix (models.readers.read_count_file)."""
    from models.readers import read_count_file

    return read_count_file(path, columns=columns, header=header)


def fit_report(model: Any, data: Any, result: Any, context: dict) -> list[str]:
    """The top items of the heaviest factors (the course's "genres")."""
    from models.poisson_mf.products import factor_top_records

    top = factor_top_records(result, n=5, num_factors=min(5, model.K))
    if not top:
        return []
    lines = ["top factors (by total loading; 5 items each):"]
    factors = list(dict.fromkeys(r["factor"] for r in top))  # in loading order
    for k in factors:
        grp = [r for r in top if r["factor"] == k]
        lines.append(f"  factor {k:>3} (loading {grp[0]['loading']:.1f}): " + ", ".join(str(r["name"]) for r in grp))
    return lines


def cavi_start(init: str) -> dict[str, str]:
    """--init reference is the course's variant: its start, and the ELBO read after each eta update."""
    return {"init": init, "elbo_at": "after_eta"} if init == "reference" else {"init": init}


# What both count models share: their data, files, synthetic problems and the factor report of compare.
COUNT_DATA = dict(
    synthetic=synthetic,
    synthetic_size=(20, 30),
    synthetic_help="rows x columns of counts",
    datasets=(DataSet("lastfm", load_lastfm, "LastFM listening counts, 999 users x 2,000 artists", default_K=40),),
    compare_figures="inference.workflows.relabel:poisson_factor_report",
    read_file=read_file,
    file_help=".csv or .parquet long format (header row,col,value or --columns; IDs are labels) or .npy / text dense "
              "counts",
    default_K=3,
    fit_report=fit_report,
)

SPEC = register(ModelSpec(
    name="poisson-mf",
    model_class="models.poisson_mf.model:PoissonMF",
    summary="Poisson-gamma matrix factorisation of counts (LastFM)",
    hyperparameters=("a_theta", "b_theta", "a_eta", "b_eta"),
    **COUNT_DATA,
    options=(Option("--init", "init", "CAVI start: default, or reference (the course's: random Gamma(U(0.5a, 1.5a), "
                    "U(0.5b, 1.5b)) starts, the ELBO at a uniform lambda first, then after each eta update)",
                    target="cavi", choices=("default", "reference"), convert=cavi_start),
             *FILE_OPTIONS),
    calibration=Calibration(size=(4, 5), warmup=200, thin=10),
    # Gibbs's sweeps are cheap and its draws autocorrelated (the z augmentation): every 10th of 20,000 sweeps after
    # 1,000 warm-up brings 4 chains to R-hat < 1.01 on all 600 rates of make demo (benchmarks/mixing_bench.py)
    compare_settings={"gibbs": {"num_samples": 2000, "warmup": 1000, "thin": 10, "num_chains": 4}},
))


HPF_SPEC = register(ModelSpec(
    name="hpf",
    model_class="models.poisson_mf.hierarchical:HierarchicalPoissonMF",
    summary="hierarchical Poisson factorisation: Poisson MF with row activity and column popularity (LastFM)",
    hyperparameters=("a_theta", "c_theta", "d_theta", "a_eta", "c_eta", "d_eta"),
    **COUNT_DATA,
    options=FILE_OPTIONS,
    # calibration draws problems from the prior: Gopalan's a = c = d = 0.3 gives rates up to 1e17 there (xi near 0),
    # so SBC and Geweke use a prior whose draws are count data (E[xi] = 1, sd 0.45; E[theta] about 1.25)
    calibration=Calibration(size=(4, 5), warmup=200, thin=10,
                            model_options={"a_theta": 1.0, "c_theta": 5.0, "d_theta": 5.0, "a_eta": 1.0,
                                           "c_eta": 5.0, "d_eta": 5.0}),
    compare_methods=("cavi", "gibbs", "svi", "nuts"),  # (EM needs a >= 1: not at the default a = 0.3)
))
