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
         "test_bayes_gmm.py", "test_site.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for the browser tests; installed with apt-get when missing (as root, one worker at a time).
    Skipped only where it cannot be installed outside CI; in CI (CI=true) a missing Chromium fails."""
    import fcntl
    import shutil
    import subprocess

    path = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        with open("/tmp/inferlab-chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not Path(path).exists():
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
                subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {path} and apt-get could not install it")
        pytest.skip(f"no Chromium at {path} (apt-get install chromium, as root)")
    return path
