"""The layering (import-linter contracts in pyproject.toml), cheap imports, and a repository that refers to no
document outside itself."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "4 kept" in proc.stdout, proc.stdout


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return set(out)


@pytest.mark.parametrize("code, absent", [
    ("import models", ["torch", "pyro", "arviz", "pandas", "matplotlib"]),
    ("from models import registry; registry.names()", ["torch", "pyro", "arviz"]),
    ("from models import PoissonMF, GaussianMF, BayesGMM, BayesGMMFull", ["pyro", "arviz", "matplotlib", "xarray",
                                                                         "dask"]),
    ("import inference", ["torch", "pyro", "arviz"]),
    ("from inference.cli import build_parser; build_parser()", ["torch", "pyro", "arviz"]),
    ("from inference import fit_cavi", ["arviz", "pyro.infer.mcmc", "matplotlib", "dask"]),
])
def test_imports_load_only_what_they_use(code, absent):
    loaded = loaded_after(code)
    assert not [m for m in absent if m in loaded], code


def test_nothing_refers_to_a_document_outside_the_repository():
    """No file cites the planning documents that live outside the repository, or reads ../shared directly (tests
    reach the data sets through INFERLAB_DATA only)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    this = Path(__file__).relative_to(ROOT).as_posix()
    offenders = []
    for name in tracked:
        path = ROOT / name
        if name == this or name == ".ci/run" or not path.is_file() or path.suffix in (".png", ".nc"):
            continue
        text = path.read_text(errors="ignore")
        for needle in ("DESIGN.md", "../shared", "shared/data", "STYLE.md"):
            if needle in text:
                offenders.append(f"{name}: {needle}")
        if "REFERENCE.md" in text.replace("docs/REFERENCE.md", ""):
            offenders.append(f"{name}: REFERENCE.md outside docs/")
    assert not offenders, offenders
