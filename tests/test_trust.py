"""No silent wrong answers: stored results are reused only for the same configuration, user files are read by column
name, failed fits are errors and never saved, and every expected failure is one line with a documented exit status.
Each test here failed on the code before these checks existed (the case it names was a wrong answer or a traceback)."""

import json
import os
import signal
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from inference.cli import main
from inference.workflows.sweep import SweepConfigError, get_executor, run_sweep
from models.data import as_count_matrix, as_mixture_data, as_rating_data

SERIAL = get_executor("serial")


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert line, err
    for needle in needles:
        assert needle in line[-1], (needle, err)


# ---------------------------------------------------------------------------------------------------
# 1. Sweeps keyed by their configuration

SELECT = ["select", "poisson-mf", "--rows", "8", "--cols", "6", "--K", "1", "2", "--seeds", "0", "--iters", "10",
          "--scheduler", "serial", "--no-progress"]


def test_select_refuses_a_folder_of_other_hyperparameters_or_data(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    code, first, err = run(SELECT + out, capsys)
    assert code == 0, err
    elbo_before = pd.read_csv(tmp_path / "runs.csv")["elbo"].to_numpy()
    code, _, err = run(SELECT + out + ["--hyper", "a_theta=5"], capsys)
    assert code == 2
    one_line_error(err, "another configuration", "a_theta=1.0", "a_theta=5.0", "--overwrite")
    code, _, err = run(SELECT[:2] + ["--rows", "9"] + SELECT[4:] + out, capsys)  # other data
    assert code == 2
    one_line_error(err, "another configuration", "data")
    code, again, err = run(SELECT + out, capsys)  # the same configuration resumes (nothing to run)
    assert code == 0 and again.splitlines()[-3:] == first.splitlines()[-3:]
    code, _, err = run(SELECT + out + ["--hyper", "a_theta=5", "--overwrite"], capsys)
    assert code == 0, err
    elbo_after = pd.read_csv(tmp_path / "runs.csv")["elbo"].to_numpy()
    assert np.all(np.abs(elbo_after - elbo_before) > 1e-6)  # refitted under a_theta=5, not the stored runs


def test_more_K_with_the_same_configuration_extends_the_sweep(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert run(SELECT + out, capsys)[0] == 0
    before = (tmp_path / "runs" / "K1-seed0.json").read_text()
    code, _, err = run(SELECT[:6] + ["--K", "1", "2", "3"] + SELECT[9:] + out, capsys)
    assert code == 0, err
    assert (tmp_path / "runs" / "K3-seed0.json").is_file()
    assert (tmp_path / "runs" / "K1-seed0.json").read_text() == before  # reused, not rerun


def test_em_then_kmeans_in_one_folder_is_refused(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(30, 2))
    np.savetxt(tmp_path / "x.txt", X)
    base = ["em", str(tmp_path / "x.txt"), "--K", "1", "2", "--seeds", "0", "--scheduler", "serial", "--no-progress",
            "--out", str(tmp_path / "o")]
    assert run(base, capsys)[0] == 0
    code, out, err = run(base + ["--method", "kmeans"], capsys)
    assert code == 2 and "cost" not in out
    one_line_error(err, "another configuration", "'em' -> 'kmeans'")
    np.savetxt(tmp_path / "x.txt", X + 1.0)  # same file name, other content
    code, _, err = run(base, capsys)
    assert code == 2
    one_line_error(err, "X: same description, other content")


def square(x):
    return {"y": x * x}


def cube(x):
    return {"y": x ** 3}


def test_another_task_function_in_the_folder_is_refused(tmp_path):
    run_sweep(square, {"rep-0": {"x": 2}}, out=tmp_path, executor=SERIAL, progress=False)
    with pytest.raises(SweepConfigError, match="task: .*square -> .*cube"):
        run_sweep(cube, {"rep-0": {"x": 2}}, out=tmp_path, executor=SERIAL, progress=False)
    with pytest.raises(SweepConfigError, match="arguments|x: 2 -> 3"):
        run_sweep(square, {"rep-0": {"x": 3}}, out=tmp_path, executor=SERIAL, progress=False)
    assert run_sweep(cube, {"rep-0": {"x": 2}}, out=tmp_path, executor=SERIAL, progress=False,
                     overwrite=True) == {"rep-0": {"y": 8}}


@pytest.mark.parametrize("damage", ['{"y": 4', '{"z": 4}', '[4]', '{"y": NaN}', ''])
def test_a_damaged_task_file_is_redone_with_a_warning(tmp_path, damage):
    tasks = {f"rep-{i}": {"x": i} for i in range(3)}
    run_sweep(square, tasks, out=tmp_path, executor=SERIAL, progress=False)
    (tmp_path / "rep-1.json").write_text(damage)
    with pytest.warns(UserWarning, match="rep-1.json is damaged"):
        res = run_sweep(square, tasks, out=tmp_path, executor=SERIAL, progress=False)
    assert res == {f"rep-{i}": {"y": i * i} for i in range(3)}
    assert json.loads((tmp_path / "rep-1.json").read_text()) == {"y": 1}


def test_task_files_without_a_manifest_are_refused(tmp_path):
    (tmp_path / "rep-0.json").write_text('{"y": 99}')
    with pytest.raises(SweepConfigError, match="no manifest.json"):
        run_sweep(square, {"rep-0": {"x": 2}}, out=tmp_path, executor=SERIAL, progress=False)


def test_a_non_finite_task_result_stops_the_sweep_and_is_not_written(tmp_path):
    with pytest.raises(ValueError, match=r"task rep-0: result\['y'\] is nan"):
        run_sweep(square, {"rep-0": {"x": float("nan")}}, out=tmp_path, executor=SERIAL, progress=False)
    assert not (tmp_path / "rep-0.json").exists()


# ---------------------------------------------------------------------------------------------------
# 2. Long-format files by column name; IDs are labels


def counts_of(path, **kw):
    from models.readers import read_count_file

    return read_count_file(path, **kw)


def test_a_header_less_csv_is_refused_unless_declared(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("0,1,3\n1,2,4\n2,0,1\n")
    with pytest.raises(ValueError, match="looks like a record, not a header.*--no-header"):
        counts_of(path)
    X = counts_of(path, header=False)
    assert X.nnz == 3 and X.total == 8  # the first record is kept
    code, _, err = run(["fit", "poisson-mf", "--data", str(path), "--method", "cavi", "-K", "1", "--iters", "2",
                        "--no-progress"], capsys)
    assert code == 2
    one_line_error(err, "x.csv", "--no-header")


def test_columns_are_found_by_name_not_position(tmp_path):
    (tmp_path / "a.csv").write_text("row,col,value\n0,1,3\n1,2,4\n2,0,1\n5,1,2\n")
    (tmp_path / "b.csv").write_text("value,row,col\n3,0,1\n4,1,2\n1,2,0\n2,5,1\n")
    (tmp_path / "c.csv").write_text("plays,artist,user\n3,1,0\n4,2,1\n1,0,2\n2,1,5\n")
    a, b, c = (counts_of(tmp_path / f) for f in ("a.csv", "b.csv", "c.csv"))
    assert a.shape == b.shape == c.shape == (4, 3)
    for other in (b, c):
        np.testing.assert_array_equal(other.to_dense().numpy(), a.to_dense().numpy())
    np.testing.assert_array_equal(a.row_labels, [0, 1, 2, 5])
    (tmp_path / "d.csv").write_text("u,i,stars,count\n0,1,5,3\n")
    with pytest.raises(ValueError, match="d.csv: no column named 'plays'"):
        counts_of(tmp_path / "d.csv", columns=("u", "i", "plays"))
    assert counts_of(tmp_path / "d.csv", columns=("u", "i", "stars")).total == 5


def test_raw_ids_are_mapped_to_dense_indices_with_labels_kept(tmp_path):
    (tmp_path / "x.csv").write_text("user,item,count\n10000000,7,2\n10000000,9,1\n42,7,5\n")
    X = counts_of(tmp_path / "x.csv")
    assert X.shape == (2, 2)
    np.testing.assert_array_equal(X.row_labels, [42, 10000000])
    np.testing.assert_array_equal(X.col_labels, [7, 9])
    np.testing.assert_array_equal(X.to_dense().numpy(), [[5, 0], [2, 1]])


def test_a_dense_dataframe_is_not_read_as_long_format():
    with pytest.raises(ValueError, match="looks like a record|no row column"):
        as_count_matrix(pd.DataFrame(np.arange(12).reshape(4, 3)))
    with pytest.raises(ValueError, match="no row column"):
        as_count_matrix(pd.DataFrame({"a": [1, 2], "b": [3, 4], "c": [0, 1]}))


# ---------------------------------------------------------------------------------------------------
# 3. Failed fits are errors, never saved


def test_course_em_and_kmeans_on_degenerate_rows_fail_loudly(tmp_path, capsys):
    from models.course import gmm

    np.savetxt(tmp_path / "const.txt", np.ones((6, 2)))
    for method in ("em", "kmeans"):
        code, out, err = run(["em", str(tmp_path / "const.txt"), "--K", "2", "--seeds", "0", "--method", method,
                              "--scheduler", "serial", "--no-progress", "--out", str(tmp_path / method)], capsys)
        assert code == 2 and "nan" not in out.lower()
        one_line_error(err, "distinct row", "K=2")
        assert not (tmp_path / method / "runs.csv").exists()
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    seed = next(s for s in range(100) if (np.random.RandomState(s).choice(4, 2, replace=False) < 3).all())
    with pytest.raises(gmm.DegenerateMixture, match="lost all its points"):
        gmm.kmeans(X, gmm.init(X, 2, seed)[0])  # both starting means on the duplicated row
    with pytest.raises(gmm.DegenerateMixture, match="variance 0"):
        gmm.em_complete(np.ones((5, 2)), gmm.GaussianMixture(np.ones((1, 2)), np.zeros(1), np.ones(1)))


def test_em_with_missing_entries_on_identical_rows_is_finite():
    from models.mixture.em_missing import fit_missing

    X = np.ones((10, 3))
    X[0, 0] = 0  # missing
    for cov in ("spherical", "diag", "full"):
        fit = fit_missing(X, 2, covariance=cov)
        assert np.isfinite(fit.log_likelihood) and np.all(np.isfinite(fit.mixture.mu)), cov


def test_a_diverged_cavi_fit_exits_3_and_saves_nothing(tmp_path, capsys):
    code, out, err = run(["fit", "poisson-mf", "--method", "cavi", "--hyper", "a_theta=1e-300", "b_theta=1e300",
                          "--iters", "5", "--no-progress", "--out", str(tmp_path)], capsys)
    assert code == 3
    one_line_error(err, "cavi on poisson-mf", "no result is returned")
    assert not list(tmp_path.glob("*.nc"))


def test_fit_failed_from_the_api():
    from inference import fit_cavi
    from inference.assemble import FitFailed
    from models.poisson_mf.model import PoissonMF

    X = as_count_matrix(np.array([[1, 0, 2], [0, 3, 1]]))
    with pytest.raises(FitFailed, match="no result is returned"):
        fit_cavi(PoissonMF(K=2, a_theta=1e-300, b_theta=1e300), X, seed=0, num_iters=5, progress=False)


def test_counts_beyond_exact_float_integers_are_refused():
    with pytest.raises(ValueError, match="above 9007199254740992"):
        as_count_matrix(np.array([[2.0 ** 60, 1.0]]))
    with pytest.raises(ValueError, match="above 16777216.*float32"):
        as_count_matrix(np.array([[2.0 ** 25, 1.0]]), dtype=torch.float32)
    assert as_count_matrix(np.array([[2.0 ** 25, 1.0]])).total == 2.0 ** 25 + 1


# ---------------------------------------------------------------------------------------------------
# 4. gaussian-mf files are ratings


def test_rating_files_keep_half_stars_negatives_and_zeros(tmp_path, capsys):
    from models.gaussian_mf.spec import read_file

    (tmp_path / "r.csv").write_text("user,item,rating\nann,x,4.5\nann,y,-2\nbob,x,0\nbob,z,3\n")
    R = read_file(tmp_path / "r.csv")
    assert len(R) == 4 and sorted(R.values.tolist()) == [-2.0, 0.0, 3.0, 4.5]
    assert list(R.row_labels) == ["ann", "bob"]
    A = np.array([[1.0, np.nan], [0.0, 2.5]])
    np.save(tmp_path / "m.npy", A)
    assert len(read_file(tmp_path / "m.npy")) == 3
    (tmp_path / "s.csv").write_text("user,item,rating\n0,0,4\n0,1,50\n1,0,3\n")
    with pytest.raises(ValueError, match="rating 50 .* outside the declared range 1..5"):
        read_file(tmp_path / "s.csv", rating_range=(1.0, 5.0))
    code, _, err = run(["fit", "gaussian-mf", "--data", str(tmp_path / "s.csv"), "--rating-range", "1", "5",
                        "--method", "cavi", "-K", "1", "--iters", "2", "--no-progress"], capsys)
    assert code == 2
    one_line_error(err, "s.csv", "rating 50")


# ---------------------------------------------------------------------------------------------------
# 5. One line per expected failure, checked before the work


@pytest.mark.parametrize("args,needle", [
    (["fit", "poisson-mf", "--method", "cavi", "--rows", "0"], "--rows: must be an integer >= 1"),
    (["fit", "poisson-mf", "--method", "cavi", "--iters", "0"], "--iters: must be an integer >= 1"),
    (["fit", "poisson-mf", "--method", "gibbs", "--samples", "0"], "--samples: must be an integer >= 1"),
    (["compare", "poisson-mf", "--samples", "0"], "--samples: must be an integer >= 1"),
    (["select", "poisson-mf", "--K", "2", "--iters", "0"], "--iters: must be an integer >= 1"),
    (["select", "poisson-mf", "--K", "2", "--tol", "-1"], "--tol: must be a finite number >= 0"),
    (["select", "poisson-mf", "--K", "2", "--tol", "nan"], "--tol: must be a finite number >= 0"),
    (["benchmark", "grid-mrf", "--size", "0", "0"], "--size: must be an integer >= 1"),
    (["geweke", "poisson-mf", "--marginal", "0"], "--marginal: must be an integer >= 1"),
    (["fit", "poisson-mf", "--method", "cavi", "--device", "cuda"], "CUDA is not available"),
    (["fit", "poisson-mf", "--method", "cavi", "--columns", "a,b,c"], "--columns: options for reading a file"),
])
def test_bad_sizes_and_devices_exit_2_with_one_line(args, needle, capsys):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(args + ["--no-progress"], capsys)
    assert code == 2
    one_line_error(err, needle)


def test_a_one_dimensional_file_for_em_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    code, _, err = run(["em", str(tmp_path / "v.npy"), "--K", "1", "--scheduler", "serial", "--no-progress"], capsys)
    assert code == 2
    one_line_error(err, "expected a 2-D matrix")


def test_the_output_folder_is_checked_before_the_fit(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, out, err = run(["fit", "poisson-mf", "--method", "cavi", "--iters", "3", "--no-progress", "--out",
                          str(tmp_path / "file")], capsys)
    assert code == 2 and out == ""  # refused before fitting: nothing printed, no work lost
    one_line_error(err, "exists and is not a folder")
    code, out, err = run(["fit", "poisson-mf", "--method", "cavi", "--iters", "3", "--no-progress", "--out",
                          str(tmp_path / "file" / "sub")], capsys)
    assert code == 2 and out == ""
    one_line_error(err, "cannot write there")


def test_an_unexpected_error_is_one_line_with_status_70_and_debug_shows_it(monkeypatch, capsys):
    from inference.cli import fit

    def broken(args):
        raise KeyError("boom")
    monkeypatch.setattr(fit, "cmd_models", broken)
    code, _, err = run(["models"], capsys)  # (the parser binds the patched function)
    assert code == 70
    one_line_error(err, "internal error: KeyError", "--debug")
    with pytest.raises(KeyError):
        main(["--debug", "models"])


def test_an_os_error_exits_4(monkeypatch, capsys):
    from inference.cli import fit

    def full(args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fit, "cmd_models", full)
    code, _, err = run(["models"], capsys)
    assert code == 4
    one_line_error(err, "No space left on device")


# ---------------------------------------------------------------------------------------------------
# 6. Smaller cases


def test_compare_refuses_another_run_and_overwrite_removes_its_stale_files(tmp_path, capsys):
    base = ["compare", "bayes-gmm", "--rows", "40", "--iters", "20", "--no-progress", "--out", str(tmp_path)]
    code, _, err = run(base + ["--methods", "cavi,em"], capsys)
    assert code == 0, err
    assert (tmp_path / "em.nc").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "em.nc" in manifest["files"] and manifest["shared"]["methods"]["value"] == "['cavi', 'em']"
    code, _, err = run(base + ["--methods", "cavi"], capsys)
    assert code == 2
    one_line_error(err, "another configuration", "methods")
    code, _, err = run(base + ["--methods", "cavi", "--overwrite"], capsys)
    assert code == 0, err
    assert not (tmp_path / "em.nc").exists() and (tmp_path / "cavi.nc").is_file()
    assert "em.nc" not in json.loads((tmp_path / "manifest.json").read_text())["files"]


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path):
    from inference.cli import _terminate
    from models._io import atomic_path

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(SystemExit) as info:
            with atomic_path(tmp_path / "result.nc") as tmp:
                tmp.write_bytes(b"half")
                os.kill(os.getpid(), signal.SIGTERM)
        assert info.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_result_files_follow_the_umask(tmp_path):
    from models._io import write_text

    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_data_command_says_checksum_mismatch_not_missing(tmp_path, monkeypatch, capsys):
    from models import datasets

    (tmp_path / "netflix").mkdir()
    (tmp_path / "netflix" / "toy_data.txt").write_text("1 2\n")
    monkeypatch.setenv("INFERLAB_DATA", str(tmp_path))
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "_download", lambda url: (_ for _ in ()).throw(datasets.DataFileError("offline")))
    code, out, _ = run(["data"], capsys)
    assert code == 2
    line = next(ln for ln in out.splitlines() if ln.startswith("netflix/toy_data.txt"))
    assert "CHECKSUM MISMATCH" in line and "MISSING" not in line


def test_numpy_integer_seeds_are_seeds_and_bad_tolerances_are_refused():
    from inference import fit_cavi
    from models.poisson_mf.model import PoissonMF

    X = as_count_matrix(np.array([[1, 0, 2], [0, 3, 1]]))
    m = PoissonMF(K=2)
    a = fit_cavi(m, X, seed=np.int64(3), num_iters=5, progress=False)
    b = fit_cavi(m, X, seed=3, num_iters=5, progress=False)
    np.testing.assert_array_equal(a.point["theta"], b.point["theta"])
    for tol in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
            fit_cavi(m, X, seed=0, num_iters=5, tol=tol, progress=False)
    with pytest.raises(ValueError, match="num_iters must be an integer >= 1"):
        fit_cavi(m, X, seed=0, num_iters=0, progress=False)


def test_negative_cell_indices_are_refused():
    from inference import fit_cavi
    from models.gaussian_mf import GaussianMF, predict
    from models.poisson_mf.products import expected_rates

    R = as_rating_data(np.array([[1.0, 2.0], [3.0, np.nan]]))
    model = GaussianMF(K=1, prior="fixed")
    res = fit_cavi(model, R, seed=0, num_iters=3, progress=False)
    with pytest.raises(ValueError, match=r"rows: index -1 is outside \[0, 2\)"):
        predict(model, R, res, [-1], [0])
    X = as_count_matrix(np.array([[1, 0, 2], [0, 3, 1]]))
    from models.poisson_mf.model import PoissonMF

    res = fit_cavi(PoissonMF(K=1), X, seed=0, num_iters=3, progress=False)
    with pytest.raises(ValueError, match="cols: index 3 is outside"):
        expected_rates(res, torch.tensor([0]), torch.tensor([3]))


@pytest.mark.parametrize("make", [as_count_matrix, as_mixture_data, as_rating_data])
def test_complex_input_is_refused(make):
    with pytest.raises(TypeError, match="complex"):
        make(np.array([[1 + 2j, 3], [4, 5]]))
