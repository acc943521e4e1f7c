"""Loaders for the real data sets (LastFM counts, Netflix/MITx matrices, MovieLens-100K) and synthetic draws.

Files are looked up, in order, in ``$INFERLAB_DATA/<dataset>/<file>``, then in the cache folder
(``$INFERLAB_CACHE`` or ``~/.cache/inferlab``), and otherwise downloaded there from the original
address. Every file is checked against its published sha256 before it is read. Nothing here is
committed to the repository.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models._io import atomic_path, write_bytes
from models.data import CountMatrix, as_count_matrix

__all__ = ["DataFileError", "ChecksumMismatch", "data_path", "load_lastfm", "load_netflix", "load_movielens_100k",
           "Ratings", "NetflixData", "MovieLens100K", "DATASETS"]

LASTFM_URL = "https://raw.githubusercontent.com/slinderman/stats305c/main/assignments/hw5/subsampled_last_fm.csv"
NETFLIX_URL = "https://raw.githubusercontent.com/Samanngh/netflix-em-collaborative-filtering/main/{file}"
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

# sha256 of every file of the published copies (the data sets' sources are listed in docs/REFERENCE.md).
SHA256 = {
    "lastfm/subsampled_last_fm.csv": "0fc70641dc08fecde35116ab2cf439ece769878b007bcbfd7a11719a94f2cf11",
    "netflix/netflix_complete.txt": "30c27318115235e50d6124ecbead6241d2376fc7c2116106834bf558d175dc35",
    "netflix/netflix_incomplete.txt": "7a81ae26f41725a5deeec079dceec27d06949e1b82795803d42ec68c0e00408c",
    "netflix/test_complete.txt": "0a5c494e5faf287544bae4af069d7557f50953116e64b39a80ec4be200e1772e",
    "netflix/test_incomplete.txt": "bef9922ca72b321f270c1c8e25e9b54bdac16102d8f1fdb8fd0539c732c3c37f",
    "netflix/test_solutions.txt": "14ddb974dc3610dbdc50610f84d1c8534c32de5ac4d36816a463e63943a2234b",
    "netflix/toy_data.txt": "a558ed25342d216d432fc8fa80870ef5fca43f45aeebd9350c32529b39d492d7",
    "movielens-100k/README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    "movielens-100k/u.data": "fdd911fd49bdfb6217a847ecda136db664eaedddf75a2802c72cf11419045e27",
    "movielens-100k/u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "movielens-100k/u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "movielens-100k/u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "movielens-100k/u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "movielens-100k/u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "movielens-100k/u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "movielens-100k/u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "movielens-100k/u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
    "movielens-100k/u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
    "movielens-100k/u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
    "movielens-100k/u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
    "movielens-100k/u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
    "movielens-100k/u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
    "movielens-100k/u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
    "movielens-100k/u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
}


class DataFileError(RuntimeError):
    """A data file is missing and cannot be downloaded, or its checksum does not match."""


class ChecksumMismatch(DataFileError):
    """A data file is there but its SHA-256 is not the published one (damaged, truncated or another version)."""


def _cache_dir() -> Path:
    return Path(os.environ.get("INFERLAB_CACHE", Path.home() / ".cache" / "inferlab"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_VERIFIED: set[tuple[str, float]] = set()


def _verify(path: Path, key: str) -> Path:
    stamp = (str(path), path.stat().st_mtime)
    if stamp not in _VERIFIED:
        digest = _sha256(path)
        if digest != SHA256[key]:
            raise ChecksumMismatch(f"{path}: sha256 {digest} does not match the published {SHA256[key]} "
                                f"for {key}; delete the file to download it again")
        _VERIFIED.add(stamp)
    return path


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as exc:
        raise DataFileError(f"could not download {url} ({exc})") from exc


def data_path(key: str) -> Path:
    """Local path of a data file such as ``"lastfm/subsampled_last_fm.csv"``, downloading it if needed.

    Raises:
        DataFileError: offline and not found (the message says where to put the file), or a checksum
            mismatch.
    """
    if key not in SHA256:
        raise ValueError(f"unknown data file {key!r}; known: {sorted(SHA256)}")
    override = os.environ.get("INFERLAB_DATA")
    if override and (Path(override) / key).is_file():
        return _verify(Path(override) / key, key)
    cached = _cache_dir() / key
    if cached.is_file():
        return _verify(cached, key)
    dataset, file = key.split("/", 1)
    try:
        if dataset == "lastfm":
            write_bytes(cached, _download(LASTFM_URL))
        elif dataset == "netflix":
            write_bytes(cached, _download(NETFLIX_URL.format(file=file)))
        else:
            archive = zipfile.ZipFile(io.BytesIO(_download(MOVIELENS_URL)))
            for member in archive.namelist():
                name = member.split("/", 1)[-1]
                if f"{dataset}/{name}" in SHA256:
                    write_bytes(_cache_dir() / dataset / name, archive.read(member))
    except ChecksumMismatch:
        raise
    except DataFileError as exc:
        where = f"$INFERLAB_DATA/{key} (INFERLAB_DATA={override!r})" if override else f"{cached}"
        raise DataFileError(f"{key} is not available locally and could not be downloaded ({exc}). "
                            f"Put the file at {where} or set INFERLAB_DATA to a folder holding {key}.") from None
    return _verify(cached, key)


# ---------------------------------------------------------------------------------------------------
# LastFM


# the version of the parsed form below; raise it when _parse_lastfm changes what it returns
_LASTFM_PARSE_VERSION = 1
_LASTFM_ARRAYS = ("rows", "cols", "values", "shape", "users", "items", "names", "warnings")


def load_lastfm(*, dtype: torch.dtype = torch.float64, device: str = "cpu") -> CountMatrix:
    """LastFM listening counts: 999 users x 2,000 artists, 40,141 nonzeros, total 5,224,917.

    Read as the course reads it (``pd.read_csv`` with default quoting). One record has an unclosed
    quote in its Artist field (file line 27,359) that swallows 3,331 raw lines; its UserID, ItemID
    and Count are right, and its artist name is repaired to the text before the first tab.

    The parsed arrays are kept in the cache folder (``parsed/``, keyed by the file's published sha256 and the parser
    version), so later loads read them with NumPy instead of parsing the CSV with pandas; the CSV's checksum is
    still verified on every first load in a process.

    Returns:
        CountMatrix with row_labels = UserID (N,), col_labels = ItemID (M,), col_names = artist (M,).
    """
    key = "lastfm/subsampled_last_fm.csv"
    path = data_path(key)
    cached = _cache_dir() / "parsed" / f"lastfm.{SHA256[key][:16]}.v{_LASTFM_PARSE_VERSION}.npz"
    try:
        with open(cached, "rb") as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _LASTFM_ARRAYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # absent or damaged: parse again
        arrays = _parse_lastfm(path)
        try:
            with atomic_path(cached) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
        except OSError:  # a read-only cache folder: parse every time
            pass
    for message in arrays["warnings"]:
        warnings.warn(str(message), stacklevel=2)
    rows, cols, values = (torch.from_numpy(arrays[k]) for k in ("rows", "cols", "values"))
    return CountMatrix(rows.to(device), cols.to(device), values.to(device=device, dtype=dtype),
                       tuple(int(v) for v in arrays["shape"]), row_labels=arrays["users"],
                       col_labels=arrays["items"], col_names=arrays["names"].astype(object), name="lastfm")


def _parse_lastfm(path: Path) -> dict[str, np.ndarray]:
    """The LastFM CSV as arrays: the entries row-major (rows, cols int64, values float64), shape, users, items,
    artist names (str) and the warnings the parse raised (str)."""
    import pandas as pd

    df = pd.read_csv(path)
    artist = df["Artist"].astype(str)
    broken = artist.str.contains("\n", regex=False)
    messages = []
    if broken.any():
        for i in np.flatnonzero(broken.to_numpy()):
            rec = df.iloc[i]
            messages.append(f"LastFM: malformed record (unclosed quote) for UserID {rec.UserID}, ItemID "
                            f"{rec.ItemID}, Count {rec.Count}: its Artist field swallowed "
                            f"{artist.iloc[i].count(chr(10))} raw lines; repaired to "
                            f"{artist.iloc[i].split(chr(9))[0]!r}")
        artist = artist.where(~broken, artist.str.split("\t").str[0])
    users = np.sort(df["UserID"].unique())
    items = np.sort(df["ItemID"].unique())
    r = np.searchsorted(users, df["UserID"].to_numpy())
    c = np.searchsorted(items, df["ItemID"].to_numpy())
    names = pd.Series(artist.to_numpy(), index=df["ItemID"].to_numpy())
    names = names[~names.index.duplicated()].reindex(items).to_numpy(dtype=str)
    long = pd.DataFrame({"row": r, "col": c, "value": df["Count"].to_numpy()})
    X = as_count_matrix(long, shape=(len(users), len(items)), dtype=torch.float64, name="lastfm")
    return {"rows": X.rows.numpy(), "cols": X.cols.numpy(), "values": X.values.numpy(),
            "shape": np.array(X.shape, dtype=np.int64), "users": users, "items": items, "names": names,
            "warnings": np.array(messages, dtype=str)}


# ---------------------------------------------------------------------------------------------------
# Ratings (Netflix / MITx and MovieLens-100K)


@dataclass(frozen=True)
class Ratings:
    """Observed entries of an N x M rating matrix, in long format.

    Attributes:
        rows: (n,) int64 0-based row index; cols: (n,) int64 0-based column index;
        values: (n,) float64 rating; shape: (N, M).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class NetflixData:
    """The MITx 6.86x Netflix project matrices (1200 x 1200, ratings 1..5, 0 = missing)."""

    incomplete: np.ndarray  # (N, M), 0 = missing
    complete: np.ndarray  # (N, M), the same matrix with every entry filled in

    @property
    def missing(self) -> np.ndarray:
        """(N, M) boolean mask of the entries hidden in ``incomplete``."""
        return self.incomplete == 0


def load_netflix(name: str = "netflix") -> NetflixData | np.ndarray:
    """MITx files. ``name``: "netflix" or "test" (matrix pairs), "toy" (250 x 2 points, an array)."""
    if name == "toy":
        return np.loadtxt(data_path("netflix/toy_data.txt"))
    if name not in ("netflix", "test"):
        raise ValueError(f"name must be 'netflix', 'test' or 'toy', got {name!r}")
    return NetflixData(np.loadtxt(data_path(f"netflix/{name}_incomplete.txt")),
                       np.loadtxt(data_path(f"netflix/{name}_complete.txt")))


@dataclass(frozen=True)
class MovieLens100K:
    """MovieLens-100K: all 100,000 ratings, the official 80/20 folds u1..u5 and item titles.

    Indices are 0-based (user id - 1, item id - 1); shape (943, 1682).
    """

    ratings: Ratings
    folds: tuple[tuple[Ratings, Ratings], ...]  # ((train, test) for u1..u5)
    titles: np.ndarray  # (M,) movie titles
    shape: tuple[int, int] = (943, 1682)


def _read_ml(key: str, shape: tuple[int, int]) -> Ratings:
    import pandas as pd

    df = pd.read_csv(data_path(key), sep="\t", header=None, names=["user", "item", "rating", "ts"])
    if df.isna().any().any():
        raise DataFileError(f"{key}: {int(df.isna().any(axis=1).sum())} rows have missing fields")
    return Ratings(df["user"].to_numpy(np.int64) - 1, df["item"].to_numpy(np.int64) - 1,
                   df["rating"].to_numpy(np.float64), shape)


def load_movielens_100k() -> MovieLens100K:
    import pandas as pd

    """MovieLens-100K with the official u1..u5 (base, test) folds and latin-1 item titles.

    ``ratings`` is the union of the five test folds, which partition the 100,000 ratings. u.data is not
    read: the published copy whose sha256 the project verifies has every digit "1" stripped (7,489
    rows lose a field), while the fold files are intact.
    """
    shape = (943, 1682)
    items = pd.read_csv(data_path("movielens-100k/u.item"), sep="|", header=None, encoding="latin-1")
    folds = tuple((_read_ml(f"movielens-100k/u{k}.base", shape), _read_ml(f"movielens-100k/u{k}.test", shape))
                  for k in range(1, 6))
    tests = [test for _, test in folds]
    rows, cols, values = (np.concatenate([getattr(t, a) for t in tests]) for a in ("rows", "cols", "values"))
    order = np.lexsort((cols, rows))
    ratings = Ratings(rows[order], cols[order], values[order], shape)
    return MovieLens100K(ratings, folds, items[1].to_numpy(dtype=object), shape)


DATASETS = {"lastfm": load_lastfm, "netflix": load_netflix, "movielens-100k": load_movielens_100k}
