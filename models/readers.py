"""Readers of user files and tables: long-format tables by column name, dense matrices, every error naming the file
and the column.

Long format (``.csv`` or ``.parquet``): one record per stored entry, with a header naming the columns (a Parquet
file always names them). The row, column and value
columns are found by name (case-insensitive aliases below) or given with ``columns=(row, col, value)``; a file
without a header is refused unless ``header=False`` declares it (the first three columns are then row, col, value).
Row and column IDs are labels, not positions: they are mapped to dense indices 0..N-1 in sorted order and kept as
``row_labels`` / ``col_labels`` (so IDs 0..N-1 map to themselves, and three records with a user ID of 10,000,000
make a 3-row matrix, not a 10^7-row one).

    read_count_file(path)                        # Poisson MF: .csv / .parquet long format or a .npy dense matrix
    read_rating_file(path, rating_range=(1, 5))  # Gaussian MF: .csv / .parquet long format, or .npy / text with NaN

A Parquet file larger than memory is converted to memory-mapped CSR files by ``models.blocks.RowBlocks.from_parquet``
(one batch of records at a time) for stochastic VI.
    read_points_file(path)                       # mixtures: (n, d) .npy or whitespace text, NaN = missing
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import ALIASES, LongTable, ReaderError, long_table

__all__ = ["ALIASES", "MAX_CELLS", "LongTable", "long_table", "read_long_csv", "read_long_parquet", "read_count_file",
           "read_rating_file", "read_points_file", "read_dense_file", "parquet_columns", "ReaderError"]

LONG_FORMATS = (".csv", ".parquet")

MAX_CELLS = 2_000_000_000  # a dense matrix beyond this is refused (16 GB of float64)


def read_long_csv(path: str | Path, *, columns: tuple[str, str, str] | None = None, header: bool = True) -> LongTable:
    """A long-format .csv file (see the module docstring); ``header=False``: no header line, the first three columns
    are row, col, value."""
    import pandas as pd

    path = Path(path)
    try:
        if header:
            df = pd.read_csv(path, skipinitialspace=True)
        else:
            df = pd.read_csv(path, header=None, skipinitialspace=True)
            if df.shape[1] < 3:
                raise ReaderError(f"{path}: a header-less long-format file needs 3 columns, found {df.shape[1]}")
            df.columns = ["row", "col", "value"] + [f"extra{i}" for i in range(df.shape[1] - 3)]
            columns = None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReaderError(f"{path}: cannot read it as a .csv table ({exc})") from None
    if len(df) == 0:
        raise ReaderError(f"{path}: no records")
    return long_table(df, columns=columns, source=str(path))


def parquet_columns(path: str | Path, columns: tuple[str, str, str] | None = None) -> tuple[str, str, str]:
    """The names of the row, col and value columns of a Parquet file (found by name, or ``columns`` checked)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from models.data import find_column

    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise ReaderError(f"{path}: cannot read it as a Parquet file ({exc})") from None
    if columns is not None and len(columns) != 3:
        raise ReaderError(f"{path}: columns must name three columns (row, col, value), got {columns!r}")
    found = tuple(find_column(names, role, columns[i] if columns else None, str(path))
                  for i, role in enumerate(("row", "col", "value")))
    if len(set(found)) < 3:
        raise ReaderError(f"{path}: the row, col and value columns must differ, got {found}")
    return found


def read_long_parquet(path: str | Path, *, columns: tuple[str, str, str] | None = None) -> LongTable:
    """A long-format .parquet file (see the module docstring), in memory; only the three columns are read."""
    import pandas as pd
    import pyarrow as pa

    path = Path(path)
    names = parquet_columns(path, columns)
    try:
        df = pd.read_parquet(path, columns=list(names))
    except (OSError, pa.ArrowException) as exc:
        raise ReaderError(f"{path}: cannot read it as a Parquet file ({exc})") from None
    if len(df) == 0:
        raise ReaderError(f"{path}: no records")
    return long_table(df, columns=names, source=str(path))


def _read_long(path: Path, columns: tuple[str, str, str] | None, header: bool) -> LongTable:
    if path.suffix == ".parquet":
        if not header:
            raise ReaderError(f"{path}: a Parquet file names its columns; --no-header is for .csv files")
        return read_long_parquet(path, columns=columns)
    return read_long_csv(path, columns=columns, header=header)


def read_dense_file(path: str | Path) -> np.ndarray:
    """A 2-D float64 matrix from .npy or whitespace-separated text (NaN allowed); refused: another number of
    dimensions, complex or non-numeric arrays, more than MAX_CELLS cells."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            raw = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            raw = np.loadtxt(path, ndmin=2)
    except (ValueError, OSError, EOFError) as exc:
        raise ReaderError(f"{path}: cannot read a numeric matrix ({exc})") from None
    if raw.ndim != 2:
        raise ReaderError(f"{path}: expected a 2-D matrix, got {raw.ndim} dimension(s) with shape {raw.shape}")
    if raw.size > MAX_CELLS:
        raise ReaderError(f"{path}: {raw.shape[0]} x {raw.shape[1]} is more than {MAX_CELLS:,} cells")
    if np.iscomplexobj(raw):
        raise ReaderError(f"{path}: the matrix holds complex numbers")
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise ReaderError(f"{path}: expected numbers, got dtype {raw.dtype}")
    return np.asarray(raw, dtype=np.float64)


def read_count_file(path: str | Path, *, columns: tuple[str, str, str] | None = None, header: bool = True):
    """Counts (a CountMatrix) from a .csv / .parquet long-format file or a .npy / text dense matrix."""
    from models.data import as_count_matrix

    path = Path(path)
    if path.suffix not in LONG_FORMATS:
        return as_count_matrix(read_dense_file(path), name=path.name, arg=str(path))
    return as_count_matrix(_read_long(path, columns, header), name=path.name, arg=str(path))


def read_rating_file(path: str | Path, *, columns: tuple[str, str, str] | None = None, header: bool = True,
                     rating_range: tuple[float, float] | None = None):
    """Ratings (a RatingData) from a .csv / .parquet long-format file or a .npy / text dense matrix with NaN for
    unobserved entries (zeros are ratings); ``rating_range=(lo, hi)``: a rating outside it is an error."""
    from models.data import as_rating_data

    path = Path(path)
    src = read_dense_file(path) if path.suffix not in LONG_FORMATS else _read_long(path, columns, header)
    return as_rating_data(src, name=path.name, rating_range=rating_range, arg=str(path))


def read_points_file(path: str | Path):
    """(n, d) points (a MixtureData) from .npy or whitespace-separated text; NaN marks a missing coordinate."""
    from models.data import as_mixture_data

    path = Path(path)
    return as_mixture_data(read_dense_file(path), name=path.name, arg=str(path))
