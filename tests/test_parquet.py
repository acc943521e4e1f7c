"""Parquet input: the readers read a long-format .parquet file like a .csv one; RowBlocks.from_parquet converts it to
memory-mapped CSR files batch by batch, giving the same matrix (labels, order, values) as the in-memory reader and
the same stochastic-VI fit; bad files are refused naming the file, the column and the record."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from inference.stochastic import stochastic_vi
from models import GaussianMF, PoissonMF
from models.blocks import RowBlocks
from models.data import ReaderError
from models.readers import read_count_file, read_rating_file


def write(path, table: dict, row_group_size=None):
    pq.write_table(pa.table(table), path, row_group_size=row_group_size)
    return path


@pytest.fixture
def counts_file(tmp_path):
    """A 40 x 25 count matrix in long format, records shuffled, user IDs sparse integers, artists strings, some zero
    counts, several row groups."""
    rng = np.random.default_rng(0)
    X = rng.poisson(0.8, (40, 25))
    r, c = np.nonzero(np.ones_like(X))
    keep = (X[r, c] > 0) | (rng.random(r.size) < 0.1)        # the nonzeros and some explicit zeros
    r, c = r[keep], c[keep]
    order = rng.permutation(r.size)
    users = (1000 + 7 * np.arange(40))[r[order]]
    artists = np.array([f"artist {j:02d}" for j in range(25)])[c[order]]
    return write(tmp_path / "plays.parquet", {"user": users, "artist": artists,
                                              "plays": X[r, c][order].astype(np.int64)}, row_group_size=97), X


def test_parquet_counts_read_like_csv(counts_file, tmp_path):
    path, X = counts_file
    data = read_count_file(path)
    csv = tmp_path / "plays.csv"
    pq.read_table(path).to_pandas().to_csv(csv, index=False)
    ref = read_count_file(csv)
    for k in ("rows", "cols", "values"):
        assert torch.equal(getattr(data, k), getattr(ref, k))
    np.testing.assert_array_equal(data.row_labels, ref.row_labels)
    np.testing.assert_array_equal(data.col_labels, ref.col_labels)
    assert np.array_equal(data.to_dense().numpy(), X[:, :])   # IDs sorted as the rows and columns were made


@pytest.mark.parametrize("batch", [1, 37, 10_000])
def test_from_parquet_streams_into_the_same_csr(counts_file, tmp_path, batch):
    path, X = counts_file
    blocks = RowBlocks.from_parquet(path, tmp_path / f"csr{batch}", counts=True, batch_records=batch)
    ref = RowBlocks.from_matrix(read_count_file(path))
    assert isinstance(blocks.values, np.memmap) and blocks.shape == (40, 25) and blocks.nnz == int((X > 0).sum())
    np.testing.assert_array_equal(blocks.indptr, ref.indptr)
    np.testing.assert_array_equal(blocks.cols, ref.cols)
    np.testing.assert_array_equal(blocks.values, ref.values)
    np.testing.assert_array_equal(blocks.row_labels, 1000 + 7 * np.arange(40))
    assert blocks.col_labels[3] == "artist 03"
    again = RowBlocks.open(tmp_path / f"csr{batch}")
    np.testing.assert_array_equal(again.col_labels, blocks.col_labels)


def test_stochastic_vi_on_a_parquet_file_equals_the_in_memory_fit(counts_file, tmp_path):
    path, _ = counts_file
    model = PoissonMF(K=2)
    kw = dict(seed=1, batch_size=10, num_iters=12, progress=False)
    disk = stochastic_vi(model, RowBlocks.from_parquet(path, tmp_path / "csr", counts=True, batch_records=50), **kw)
    mem = stochastic_vi(model, RowBlocks.from_matrix(model.prepare(read_count_file(path))), **kw)
    assert disk.elbo == mem.elbo


def test_parquet_ratings_for_gaussian_mf(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    path = write(tmp_path / "r.parquet", {"u": rng.integers(0, 30, n), "movie": rng.integers(0, 20, n),
                                          "rating": rng.integers(1, 6, n).astype(float)})
    table = pq.read_table(path).to_pandas().drop_duplicates(["u", "movie"])
    path = write(tmp_path / "r.parquet", {k: table[k].to_numpy() for k in table.columns})
    data = read_rating_file(path, rating_range=(1, 5))
    blocks = RowBlocks.from_parquet(path, tmp_path / "csr", batch_records=64)
    np.testing.assert_array_equal(blocks.values, RowBlocks.from_matrix(data).values)
    model = GaussianMF(K=2, prior="fixed")
    a = stochastic_vi(model, blocks, seed=0, batch_size=8, num_iters=6, progress=False)
    b = stochastic_vi(model, RowBlocks.from_matrix(data), seed=0, batch_size=8, num_iters=6, progress=False)
    assert a.elbo == b.elbo


@pytest.mark.parametrize("table,counts,match", [
    ({"user": [1, 2, 1], "item": [1, 1, 1], "n": [1, 2, 3]}, True, r"the cell \(user=1, item=1\) is given more"),
    ({"user": [1, None], "item": [1, 2], "n": [1, 2]}, True, "column 'user' has an empty ID in record 2"),
    ({"user": [1, 2], "item": [1, 2], "n": [1.0, np.nan]}, False, "column 'n' has nan in record 2"),
    ({"user": [1, 2], "item": [1, 2], "n": [1, -2]}, True, "counts must be non-negative"),
    ({"user": [1, 2], "item": [1, 2], "n": [1, 2.5]}, True, "counts must be integers"),
    ({"user": [1, 2], "thing": [1, 2], "n": [1, 2]}, True, "no col column"),
    ({"user": [1, 2], "item": [1, 2], "n": [0, 0]}, True, "no records with a nonzero count"),
])
def test_bad_parquet_files_are_refused_by_name(tmp_path, table, counts, match):
    path = write(tmp_path / "bad.parquet", table)
    good = write(tmp_path / "good.parquet", {"user": [1, 2], "item": [1, 2], "n": [1, 2]})
    RowBlocks.from_parquet(good, tmp_path / "csr", counts=True)    # a whole earlier conversion in the folder
    with pytest.raises(ReaderError, match=match):
        RowBlocks.from_parquet(path, tmp_path / "csr", counts=counts, batch_records=1)
    left = sorted(p.name for p in (tmp_path / "csr").iterdir())
    if "shape.json" in left:   # refused before writing (a missing column): the earlier conversion is intact
        assert RowBlocks.open(tmp_path / "csr").nnz == 2
    else:                      # refused while converting: nothing half-written is left
        assert left == []


def test_not_a_parquet_file_and_no_header_option(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("row,col,value\n1,2,3\n")
    with pytest.raises(ReaderError, match="cannot read it as a Parquet file"):
        read_count_file(path)
    good = write(tmp_path / "good.parquet", {"row": [0], "col": [0], "value": [1]})
    with pytest.raises(ReaderError, match="--no-header is for .csv files"):
        read_count_file(good, header=False)
    with pytest.raises(ValueError, match="batch_records must be an integer >= 1"):
        RowBlocks.from_parquet(good, tmp_path / "csr", batch_records=0)


def test_cli_fits_a_parquet_file(counts_file, tmp_path, capsys):
    from inference.cli import main

    path, _ = counts_file
    code = main(["fit", "poisson-mf", "--data", str(path), "--method", "cavi", "-K", "2", "--iters", "5",
                 "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "plays.parquet: 40 x 25" in out.out
