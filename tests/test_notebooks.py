"""The notebooks run end to end (with INFERLAB_NB_QUICK=1 for small iteration counts)."""

from pathlib import Path

import pytest

from tests.conftest import ROOT, have_data, needs_lastfm

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


@needs_lastfm
@pytest.mark.skipif(not have_data("netflix/netflix_incomplete.txt"), reason="Netflix files not available")
@pytest.mark.skipif(not have_data("movielens-100k/u1.test"), reason="MovieLens-100K not available")
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, monkeypatch, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    monkeypatch.setenv("INFERLAB_NB_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # one thread per kernel: the suite runs two workers on two cores, and OpenMP threads that spin while the other
    # worker holds a core slow a kernel down several times over
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    nb = jupytext.read(path)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
