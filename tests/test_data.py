"""Data loaders (real files from the shared copy) and input validation."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from models import as_count_matrix
from models import datasets
from tests.conftest import have_data, needs_lastfm


@needs_lastfm
def test_lastfm_matches_the_course_reading():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = datasets.load_lastfm()
    assert X.shape == (999, 2000)
    assert X.nnz == 40141
    assert X.total == 5224917
    msgs = [str(w.message) for w in caught if "malformed record" in str(w.message)]
    assert len(msgs) == 1 and "UserID 662" in msgs[0] and "3331 raw lines" in msgs[0]
    # the repaired record: user 662, item 895, count 116, artist name without the swallowed lines
    j = int(np.flatnonzero(X.col_labels == 895)[0])
    i = int(np.flatnonzero(X.row_labels == 662)[0])
    assert X.col_names[j] == "weird al yankovic"
    assert float(X.to_dense()[i, j]) == 116.0
    assert all("\n" not in str(n) and "\t" not in str(n) for n in X.col_names)
    # labels: user ids and item ids in sorted order; row sums match the csv
    df = pd.read_csv(datasets.data_path("lastfm/subsampled_last_fm.csv"))
    per_user = df.groupby("UserID")["Count"].sum()
    dense = X.to_dense()
    np.testing.assert_array_equal(dense.sum(1).numpy(), per_user.loc[X.row_labels].to_numpy())


@needs_lastfm
def test_lastfm_parsed_cache_gives_the_same_matrix_and_warning(tmp_path, monkeypatch):
    """The first load parses the CSV and keeps the arrays in the cache folder; later loads read them (no pandas) and
    give the same matrix, labels, names and warning; a damaged cache file is parsed again."""
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))

    def load():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X = datasets.load_lastfm()
        return X, [str(w.message) for w in caught if "malformed record" in str(w.message)]

    first, w1 = load()
    (cached,) = (tmp_path / "parsed").glob("lastfm.*.npz")
    second, w2 = load()
    cached.write_bytes(cached.read_bytes()[:100])  # truncated
    third, w3 = load()
    assert w1 == w2 == w3 and len(w1) == 1
    for X in (second, third):
        for k in ("rows", "cols", "values"):
            assert torch.equal(getattr(X, k), getattr(first, k))
        assert X.shape == first.shape and X.values.dtype == torch.float64
        for k in ("row_labels", "col_labels", "col_names"):
            np.testing.assert_array_equal(getattr(X, k), getattr(first, k))
        assert X.col_names.dtype == object
    with pytest.warns(UserWarning, match="malformed record"):
        assert datasets.load_lastfm(dtype=torch.float32).values.dtype == torch.float32


def test_with_values_recomputes_what_depends_on_the_values():
    """with_values shares the pattern's index arrays but not the caches of the values (sum of log x!, margins)."""
    X = as_count_matrix(np.array([[1, 0, 2], [0, 3, 0]]))
    X.log_factorial_sum(), X.margins(), X.csr_structure()
    Y = X.with_values(X.values * 2)
    assert float(Y.log_factorial_sum()) == pytest.approx(float(torch.lgamma(Y.values + 1).sum()))
    np.testing.assert_array_equal(Y.margins()[0].numpy(), [6, 6])
    np.testing.assert_array_equal(Y.margins()[1].numpy(), [2, 6, 4])
    np.testing.assert_array_equal(X.margins()[1].numpy(), [1, 3, 2])
    assert Y.csr_structure()["crow"] is X.csr_structure()["crow"]


@pytest.mark.skipif(not have_data("netflix/netflix_incomplete.txt"), reason="Netflix files not available")
def test_netflix_files():
    nf = datasets.load_netflix()
    assert nf.incomplete.shape == nf.complete.shape == (1200, 1200)
    observed = ~nf.missing
    np.testing.assert_array_equal(nf.incomplete[observed], nf.complete[observed])
    assert set(np.unique(nf.complete)) <= {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}
    # a fact of the published copy: 2,429 entries in 6 rows of netflix_complete are still 0 (not filled)
    assert int((nf.complete == 0).sum()) == 2429
    assert list(np.flatnonzero((nf.complete == 0).any(1))) == [154, 155, 183, 186, 327, 616]
    assert datasets.load_netflix("toy").shape == (250, 2)
    assert datasets.load_netflix("test").incomplete.shape == (20, 5)


@pytest.mark.skipif(not have_data("movielens-100k/u.data"), reason="MovieLens not available")
def test_movielens_folds_and_titles():
    ml = datasets.load_movielens_100k()
    assert len(ml.ratings) == 100000
    assert ml.ratings.rows.max() == 942 and ml.ratings.cols.max() == 1681
    assert len(np.unique(ml.ratings.rows)) == 943 and len(np.unique(ml.ratings.cols)) == 1682
    assert set(np.unique(ml.ratings.values)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    for train, test in ml.folds:
        assert len(train) == 80000 and len(test) == 20000
    assert ml.titles[0] == "Toy Story (1995)"


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    bad = tmp_path / "netflix" / "toy_data.txt"
    bad.parent.mkdir()
    bad.write_text("1 2\n")
    monkeypatch.setenv("INFERLAB_DATA", str(tmp_path))
    with pytest.raises(datasets.DataFileError, match="sha256"):
        datasets.data_path("netflix/toy_data.txt")


def test_offline_missing_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "_download", lambda url: (_ for _ in ()).throw(
        datasets.DataFileError(f"could not download {url} (offline)")))
    with pytest.raises(datasets.DataFileError, match="Put the file at"):
        datasets.data_path("lastfm/subsampled_last_fm.csv")
    with pytest.raises(ValueError, match="unknown data file"):
        datasets.data_path("lastfm/other.csv")


def test_cache_download_is_verified_and_atomic(tmp_path, monkeypatch):
    monkeypatch.delenv("INFERLAB_DATA", raising=False)
    monkeypatch.setenv("INFERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "_download", lambda url: b"not the file")
    with pytest.raises(datasets.DataFileError, match="sha256"):
        datasets.data_path("netflix/toy_data.txt")


# ----------------------------------------------------------------------------------------------
# as_count_matrix: every accepted input gives the same matrix; bad input names the problem

DENSE = np.array([[0, 3, 0], [1, 0, 0], [0, 0, 7], [0, 2, 0]], dtype=float)


@pytest.mark.parametrize("make", [
    lambda: DENSE,
    lambda: torch.tensor(DENSE),
    lambda: sp.csr_matrix(DENSE),
    lambda: sp.coo_matrix(DENSE),
    lambda: pd.DataFrame({"row": [0, 1, 2, 3], "col": [1, 0, 2, 1], "value": [3, 1, 7, 2]}),
    lambda: pd.DataFrame({"u": [0, 0, 1, 2, 3], "i": [1, 1, 0, 2, 1], "n": [1, 2, 1, 7, 2]}),  # duplicates summed
])
def test_inputs_agree(make):
    X = as_count_matrix(make(), shape=(4, 3))
    np.testing.assert_array_equal(X.to_dense().numpy(), DENSE)
    assert X.dtype == torch.float64 and X.nnz == 4


@pytest.mark.parametrize("bad,match", [
    (np.array([[1, -1], [0, 2]]), "non-negative"),
    (np.array([[1, 0.5], [0, 2]]), "integers"),
    (np.array([[1, np.nan], [0, 2]]), "finite"),
    (np.array([1, 2, 3]), "2-D"),
    (np.zeros((3, 3)), "empty"),
    (np.zeros((0, 3)), "empty"),
    ("counts.csv", "expected a CountMatrix"),
])
def test_bad_input_names_the_problem(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        as_count_matrix(bad)


def test_indexed_long_format_needs_non_negative_indices():
    with pytest.raises(ValueError, match="non-negative integer indices"):
        as_count_matrix(pd.DataFrame({"row": [0, -1], "col": [0, 1], "value": [1, 1]}), shape=(2, 2))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        as_count_matrix(DENSE, shape=(3, 3))
    with pytest.raises(ValueError, match="too small"):
        as_count_matrix(pd.DataFrame({"r": [5], "c": [0], "v": [1]}), shape=(3, 3))


def test_thinning_splits_every_count():
    X = as_count_matrix(np.arange(12).reshape(3, 4) * 3)
    train, test = X.thin(0.3, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal((train.to_dense() + test.to_dense()).numpy(), X.to_dense().numpy())
    assert 0 < test.total < X.total
    with pytest.raises(ValueError, match="test_fraction"):
        X.thin(1.5, torch.Generator())


def test_holding_out_cells_moves_whole_cells():
    X = as_count_matrix(np.arange(1, 201).reshape(10, 20))
    train, test = X.hold_out_cells(0.25, torch.Generator().manual_seed(0))
    A, B = train.to_dense().numpy(), test.to_dense().numpy()
    np.testing.assert_array_equal(A + B, X.to_dense().numpy())
    assert not np.any((A > 0) & (B > 0))  # a cell is in one part, whole
    assert 30 <= test.nnz <= 70  # about a quarter of the 200 cells
    with pytest.raises(ValueError, match="test_fraction"):
        X.hold_out_cells(0.0, torch.Generator())


def test_recall_at_k_ranks_unseen_columns_by_posterior_mean_rate():
    """Rates theta_n eta_m with eta = 5, 4, 3, 2, 1: row 0 saw column 0 and holds out columns 1 and 4, so its top 2
    unseen columns are 1 and 2 (recall 1 / 2); row 1 saw nothing and holds out column 0 (recall 1 / 1)."""
    from types import SimpleNamespace

    from models.poisson_mf import recall_at_k

    result = SimpleNamespace(coords={"row": np.arange(2), "col": np.arange(5)}, variational={},
                             point={"theta": np.ones((2, 1)), "eta": np.arange(5, 0, -1.0)[:, None]})
    train = as_count_matrix(np.array([[3, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    test = as_count_matrix(np.array([[0, 1, 0, 0, 2], [4, 0, 0, 0, 0]]))
    assert recall_at_k(result, train, test, k=2) == pytest.approx(0.75)
    assert recall_at_k(result, train, test, k=4) == pytest.approx(1.0)  # row 0's top 4 unseen hold both
    # a sampler's result ranks by the mean over draws of theta_n . eta_m: two draws whose mean is eta above
    eta_draws = np.stack([np.array([9.0, 1, 5, 3, 0]), np.array([1.0, 7, 1, 1, 2])])[None, :, :, None]
    sampled = SimpleNamespace(coords=result.coords, variational=None,
                              posterior={"theta": np.ones((1, 2, 2, 1)), "eta": eta_draws})
    assert recall_at_k(sampled, train, test, k=2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(result, train, test, k=0)
