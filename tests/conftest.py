import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Tests read the real data sets from the folder INFERLAB_DATA names (.ci/run sets it); without it they are skipped.
if os.environ.get("INFERLAB_DATA"):  # absolute, so that notebooks and subprocesses run elsewhere find it too
    os.environ["INFERLAB_DATA"] = str(Path(os.environ["INFERLAB_DATA"]).resolve())

torch.set_num_threads(1)  # tests run two workers on two cores


def have_data(key: str) -> bool:
    base = os.environ.get("INFERLAB_DATA")
    return bool(base) and (Path(base) / key).is_file()


needs_lastfm = pytest.mark.skipif(not have_data("lastfm/subsampled_last_fm.csv"),
                                  reason="LastFM not available (set INFERLAB_DATA)")
needs_movielens = pytest.mark.skipif(not have_data("movielens-100k/u1.test"),
                                     reason="MovieLens-100K not available (set INFERLAB_DATA)")


@pytest.fixture(scope="session")
def lastfm():
    from models.datasets import load_lastfm
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_lastfm()


# The modules with the longest tests (statistical comparisons of samplers) run first, so that the two xdist workers
# start on them together instead of one of them finishing a long test alone at the end. Modules stay contiguous (their
# module-scoped fixtures are built once per worker) and the order within a module is kept.
FIRST = ("test_bayes_gmm_full.py", "test_gaussian_mf_samplers.py", "test_poisson_mf_samplers.py", "test_calibration.py",
         "test_bayes_gmm.py", "test_notebooks.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))
