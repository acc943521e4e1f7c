"""Property-based tests (hypothesis): whatever the input, the readers and the fit entry points either accept it with
finite results or refuse it with a clear error (ValueError / TypeError, or FitFailed for a fit that diverged); never
another exception, never a NaN result."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.assemble import FitFailed
from models.course import gmm
from models.readers import read_count_file, read_rating_file

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.one_of(st.integers(-3, 12), st.integers(0, 10 ** 12), st.sampled_from(["ann", "bob", "x y", ""]))
values = st.one_of(st.integers(-2, 50), st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from(["3", "abc", "", "1e400", "2.5"]), st.integers(2 ** 53, 2 ** 64))
headers = st.one_of(st.permutations(["row", "col", "value"]), st.permutations(["user", "item", "count"]),
                    st.just(["a", "b", "c"]), st.just(["0", "1", "3"]), st.just(["user", "user", "count"]))


def _csv(header, records) -> str:
    lines = [",".join(header)] + [",".join(str(v) for v in rec) for rec in records]
    return "\n".join(lines) + "\n"


@SETTINGS
@given(header=headers, records=st.lists(st.tuples(ids, ids, values), min_size=0, max_size=12),
       kind=st.sampled_from(["counts", "ratings"]))
def test_long_format_files_are_read_or_refused_clearly(header, records, kind):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        path.write_text(_csv(header, records))
        try:
            data = (read_count_file if kind == "counts" else read_rating_file)(path)
        except (ValueError, TypeError) as exc:
            assert "x.csv" in str(exc) or "rating" in str(exc) or "count" in str(exc), exc
            return
    v = data.values.numpy()
    assert len(v) > 0 and np.all(np.isfinite(v))
    assert data.rows.max() < data.shape[0] and data.cols.max() < data.shape[1]
    assert data.shape[0] <= len(records) and data.shape[1] <= len(records)  # IDs are labels, not sizes
    if kind == "counts":
        assert np.all(v > 0) and np.all(v == np.round(v)) and v.max() <= 2.0 ** 53


@SETTINGS
@given(counts=st.lists(st.lists(st.integers(0, 10 ** 6), min_size=2, max_size=5), min_size=2, max_size=5),
       K=st.integers(1, 4), a=st.floats(1e-3, 1e3), b=st.floats(1e-3, 1e3), seed=st.integers(0, 2 ** 32))
def test_cavi_is_finite_or_refuses(counts, K, a, b, seed):
    from inference import fit_cavi
    from models.data import as_count_matrix
    from models.poisson_mf.model import PoissonMF

    width = min(len(r) for r in counts)
    X = np.array([r[:width] for r in counts])
    try:
        data = as_count_matrix(X)
    except ValueError:
        assert X.sum() == 0
        return
    try:
        res = fit_cavi(PoissonMF(K=K, a_theta=a, b_theta=b, a_eta=b, b_eta=a), data, seed=seed, num_iters=20,
                       num_samples=20, progress=False)
    except FitFailed:
        return
    assert np.isfinite(res.objective)
    for arr in list(res.point.values()) + list(res.variational.values()):
        assert np.all(np.isfinite(arr))


@SETTINGS
@given(X=st.lists(st.lists(st.integers(-3, 3), min_size=2, max_size=2), min_size=1, max_size=8),
       K=st.integers(1, 4), seed=st.integers(0, 1000), method=st.sampled_from(["kmeans", "em"]))
def test_course_kmeans_and_em_are_finite_or_refuse(X, K, seed, method):
    X = np.array(X, dtype=float)
    try:
        start = gmm.init(X, K, seed)[0]
        run = (gmm.kmeans if method == "kmeans" else gmm.em_complete)(X, start)
    except ValueError as exc:  # DegenerateMixture is a ValueError, and so is K > n
        assert "K" in str(exc) or "variance" in str(exc) or "points" in str(exc) or "log-likelihood" in str(exc)
        return
    assert np.isfinite(run.objective)
    assert all(np.all(np.isfinite(a)) for a in run.mixture)


@pytest.mark.parametrize("text", ["", "\n", "row,col,value\n", "row;col;value\n0;1;2\n", "\x00\x01binary"])
def test_degenerate_files_are_refused(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match="x.csv"):
        read_count_file(path)
