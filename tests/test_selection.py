"""Seeds x K grids through the sweep executor: the course's EM grid reproduces the course's toy figures whatever runs
it (serial, local processes, a real Dask LocalCluster), a rerun resumes from the finished runs, the CAVI ELBO grid
equals direct fits, and the CLI commands `em` and `select` print the choice and write their files."""

import json

import numpy as np
import pytest
import torch

from inference.cavi import fit_cavi
from inference.cli import main
from inference.workflows.selection import best_per_K, course_grid, elbo_grid
from inference.workflows.sweep import get_executor
from models import BayesGMM
from models.datasets import load_netflix
from tests.conftest import have_data

needs_toy = pytest.mark.skipif(not have_data("netflix/toy_data.txt"), reason="toy_data.txt not available")
SERIAL = get_executor("serial")
# docs/REFERENCE.md: best EM log-likelihood over seeds 0..4 on toy_data.txt, and the best BIC (K = 3)
TOY_EM_LL = {1: -1307.2234, 2: -1175.7146, 3: -1138.8909, 4: -1138.6012}


@needs_toy
@pytest.mark.slow
def test_course_grid_is_the_same_on_every_executor_and_reproduces_the_course(tmp_path):
    from distributed import Client, LocalCluster

    X = load_netflix("toy")
    serial = course_grid(X, [1, 2, 3, 4], [0, 1, 2, 3, 4], executor=SERIAL, progress=False)
    local = get_executor("local", workers=2)
    try:
        processes = course_grid(X, [1, 2, 3, 4], [0, 1, 2, 3, 4], executor=local, progress=False)
    finally:
        local.close()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dask = course_grid(X, [1, 2, 3, 4], [0, 1, 2, 3, 4], executor=get_executor(client), progress=False,
                           out=tmp_path)
    drop = ["seconds"]
    for other in (processes, dask):
        assert serial.drop(columns=drop).equals(other.drop(columns=drop))
    best = best_per_K(serial, "objective")
    assert {int(k): round(v, 4) for k, v in zip(best["K"], best["objective"])} == TOY_EM_LL
    assert int(best.loc[best["bic"].idxmax(), "K"]) == 3 and round(best["bic"].max(), 4) == -1169.2589
    assert len(list((tmp_path / "runs").glob("K*.json"))) == 20


def test_grid_resumes_from_finished_runs(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 2))
    first = course_grid(X, [1, 2], [0, 1], executor=SERIAL, progress=False, out=tmp_path)
    path = tmp_path / "runs" / "K2-seed1.json"
    saved = json.loads(path.read_text())
    saved["objective"] = 123.0  # a marker: a rerun must load this file, not run the task again
    path.write_text(json.dumps(saved))
    (tmp_path / "runs" / "K1-seed0.json").unlink()
    again = course_grid(X, [1, 2], [0, 1], executor=SERIAL, progress=False, out=tmp_path)
    assert again.set_index(["K", "seed"]).loc[(2, 1), "objective"] == 123.0
    assert again.set_index(["K", "seed"]).loc[(1, 0), "objective"] == first.set_index(["K", "seed"]).loc[(1, 0), "objective"]


def test_elbo_grid_equals_direct_cavi_fits():
    model = BayesGMM(K=1)
    _, data = BayesGMM(K=3).simulate((60, 2), torch.Generator().manual_seed(1))
    runs = elbo_grid(model, data, [1, 3], [0, 2], num_iters=100, executor=SERIAL, progress=False)
    assert len(runs) == 4 and runs["monotone_violations"].eq(0).all()
    direct = fit_cavi(BayesGMM(K=3), data, seed=2, num_iters=100, tol=1e-8, num_samples=20, progress=False)
    assert runs.set_index(["K", "seed"]).loc[(3, 2), "elbo"] == pytest.approx(direct.objective, rel=1e-12)


@pytest.mark.parametrize("Ks, seeds, match", [([], [0], "K values"), ([0, 2], [0], "K values"), ([1, 1], [0], "repeat"),
                                              ([1], [-1], "seeds")])
def test_bad_grids_are_refused(Ks, seeds, match):
    with pytest.raises(ValueError, match=match):
        course_grid(np.ones((5, 2)), Ks, seeds, executor=SERIAL, progress=False)


def test_select_command_prints_the_choice_and_writes_files(tmp_path, capsys):
    code = main(["select", "bayes-gmm", "--rows", "60", "--K", "1", "2", "3", "--seeds", "0", "1", "--iters", "100",
                 "--scheduler", "serial", "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "is highest at K=" in out.out and (tmp_path / "elbo_vs_K.png").is_file()
    assert len(list((tmp_path / "runs").glob("K*.json"))) == 6
    code = main(["select", "bayes-gmm", "--K", "0", "--scheduler", "serial", "--no-progress"])
    assert code == 2 and "--K: must be an integer >= 1, got 0" in capsys.readouterr().err
    code = main(["select", "bayes-gmm", "--K", "2", "--scheduler", "nowhere", "--no-progress"])
    assert code == 2 and "--scheduler" in capsys.readouterr().err


@needs_toy
def test_em_command_runs_the_grid_and_chooses_K_by_bic(tmp_path, capsys):
    code = main(["em", "toy", "--K", "1", "2", "3", "4", "--scheduler", "serial", "--out", str(tmp_path),
                 "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "BIC (larger is better) chooses K=3 (-1169.2589)" in out.out
    assert (tmp_path / "em_bic_vs_K.png").is_file() and (tmp_path / "runs.csv").is_file()
