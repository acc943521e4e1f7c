"""Build the documentation site: README, docs/, every notebook executed, and the API reference, with MkDocs.

    python docs/site/build.py            # `make docs`: every notebook in full (about 8 minutes on 2 cores)
    python docs/site/build.py --quick    # `make docs-quick`: INFERLAB_NB_QUICK=1 (small iteration counts; CI)

Steps: stage README.md (as the home page), docs/*.md and the API pages into build/site-src; execute each notebook
of notebooks/*.py (jupytext percent format) with nbclient, two at a time, into build/site-src/notebooks/*.ipynb;
run `mkdocs build --strict` (mkdocs.yml) into build/site. A notebook cell that raises stops the build with the
notebook's name and the error (exit 1); a notebook missing from mkdocs.yml's nav, or listed there and missing,
stops it too. `python docs/site/check.py` then opens build/site in headless Chromium.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "mkdocs.yml"
QUICK_BANNER = ("> **Quick build.** This page was executed with `INFERLAB_NB_QUICK=1` (small iteration counts, "
                "for CI); "
                "its figures and numbers are not the full runs. `make docs` builds the full site.")

# API reference: one page per part of the code; each lists the modules mkdocstrings renders from their docstrings.
API_PAGES = {
    "models": ("The model layer: protocol, registry, data", ["models.protocol", "models.registry", "models.data",
                                                              "models.datasets", "models.readers", "models.conjugate",
                                                              "models.blocks"]),
    "poisson_mf": ("Poisson-gamma matrix factorisation", ["models.poisson_mf.model", "models.poisson_mf.vb",
                                                          "models.poisson_mf.products", "models.poisson_mf.stochastic",
                                                          "models.poisson_mf.hierarchical"]),
    "gaussian_mf": ("Gaussian (Bayesian) matrix factorisation", ["models.gaussian_mf.model", "models.gaussian_mf.vb",
                                                                 "models.gaussian_mf.prediction",
                                                                 "models.gaussian_mf.stochastic"]),
    "mixture": ("Gaussian mixtures", ["models.mixture.base", "models.mixture.spherical", "models.mixture.full",
                                      "models.mixture.em_missing"]),
    "grid": ("Grid Markov random fields", ["models.grid.model", "models.grid.vb", "models.grid.bp", "models.grid.exact",
                                           "models.grid.images"]),
    "course": ("The course's algorithms, reproduced exactly", ["models.course.gmm"]),
    "inference": ("Inference methods", ["inference.cavi", "inference.gibbs", "inference.em", "inference.svi",
                                        "inference.nuts", "inference.exact", "inference.bp", "inference.stochastic",
                                        "inference.distributed"]),
    "results": ("Results", ["inference.results", "inference.assemble"]),
    "workflows": ("Workflows: comparison, checks, calibration, selection, relabelling",
                  ["inference.workflows.compare", "inference.workflows.checks", "inference.workflows.calibration",
                   "inference.workflows.selection", "inference.workflows.relabel", "inference.workflows.plots"]),
    "baselines": ("Baselines: the lab's factorisations and the recommender baselines",
                  ["inference.baselines.lab", "inference.baselines.recommenders"]),
}


def nav_notebooks(config: Path = CONFIG) -> list[str]:
    """The notebook stems listed in mkdocs.yml's nav, in nav order."""
    import yaml

    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node.startswith("notebooks/") and node.endswith(".ipynb"):
            names.append(Path(node).stem)

    walk(yaml.safe_load(config.read_text())["nav"])
    return names


def check_nav(notebooks_dir: Path = ROOT / "notebooks", config: Path = CONFIG) -> list[str]:
    """Notebook stems in nav order; raises SystemExit naming any notebook missing from the nav or from disk."""
    listed = nav_notebooks(config)
    on_disk = sorted(p.stem for p in notebooks_dir.glob("*.py"))
    missing_nav = sorted(set(on_disk) - set(listed))
    missing_file = sorted(set(listed) - set(on_disk))
    if missing_nav or missing_file:
        raise SystemExit(f"{config.name}: notebooks not in the nav: {missing_nav}; in the nav but not in "
                         f"notebooks/: {missing_file}")
    return listed


def execute_notebook(src: str, dst: str, quick: bool, timeout: int) -> float:
    """Execute one jupytext notebook into ``dst`` (.ipynb); returns seconds. Raises RuntimeError naming the notebook
    and the failing cell's error."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    env = {"INFERLAB_NB_QUICK": "1" if quick else "0",
           # figures inline (an Agg backend inherited from the caller would leave every plt.show() empty)
           "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           # one thread per kernel: two kernels share two cores
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           # tqdm's notice that ipywidgets is missing (progress bars print as text; a page has no widget JS)
           "PYTHONWARNINGS": "ignore:IProgress not found"}
    os.environ.update(env)
    nb = jupytext.read(src)
    if quick:
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(QUICK_BANNER))
    work = Path(dst).parent.parent.parent / "nb-work" / Path(src).stem
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        raise RuntimeError(f"notebook {Path(src).name} failed:\n{err}") from None
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, dst)
    return time.perf_counter() - start


def api_page(title: str, modules: list[str]) -> str:
    parts = [f"# {title}\n"]
    for mod in modules:
        parts.append(f"::: {mod}\n")
    return "\n".join(parts)


_DOC_MENTION = re.compile(r"(?<![`/\w\[\"])(?<!\]\()docs/([A-Z_]+)\.md(?![`\w])")


def link_doc_mentions(text: str, prefix: str) -> str:
    """Plain-text mentions of docs/NAME.md outside code (fenced and indented blocks, inline code) become links to
    ``prefix``NAME.md, so that the site's pages link where the repository's files name each other."""
    def link(line: str) -> str:
        if line.startswith("    "):  # an indented code block's line
            return line
        return _DOC_MENTION.sub(lambda m: f"[docs/{m.group(1)}.md]({prefix}{m.group(1)}.md)", line)

    parts = text.split("```")
    for i in range(0, len(parts), 2):  # outside fenced blocks
        parts[i] = "\n".join(link(line) for line in parts[i].split("\n"))
    return "```".join(parts)


def stage(src_dir: Path, keep_notebooks: bool = False) -> None:
    """README as index.md, docs/*.md under docs/, one API page per API_PAGES entry (and an empty notebooks/ unless
    ``keep_notebooks``)."""
    for sub in ("docs", "api") if keep_notebooks else ("",):
        shutil.rmtree(src_dir / sub, ignore_errors=True)
    for sub in ("docs", "notebooks", "api"):
        (src_dir / sub).mkdir(parents=True, exist_ok=True)
    (src_dir / "index.md").write_text(link_doc_mentions((ROOT / "README.md").read_text(), "docs/"))
    shutil.copy(ROOT / "docs" / "site" / "extra.css", src_dir / "extra.css")
    for md in sorted((ROOT / "docs").glob("*.md")):
        (src_dir / "docs" / md.name).write_text(link_doc_mentions(md.read_text(), ""))
    for name, (title, modules) in API_PAGES.items():
        (src_dir / "api" / f"{name}.md").write_text(api_page(title, modules))


def write_config(out: Path) -> Path:
    """mkdocs.yml with its folders pointed at ``out`` (site-src in, site out) and the API code at the repository."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    config["docs_dir"], config["site_dir"] = str((out / "site-src").resolve()), str((out / "site").resolve())
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            python = plugin["mkdocstrings"]["handlers"]["python"]
            python["paths"] = [str(ROOT)]
            python["options"]["extensions"] = [str(ROOT / ext) if ext.startswith("docs/") else ext
                                               for ext in python["options"].get("extensions", [])]
    path = out / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_site(out: Path) -> int:
    """mkdocs build --strict of the staged sources in ``out``; returns its exit status."""
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(write_config(out))]
    proc = subprocess.run(cmd, cwd=out, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    if proc.returncode:
        print("docs: mkdocs build --strict failed (above)", file=sys.stderr)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="execute the notebooks with INFERLAB_NB_QUICK=1")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default 2)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per notebook cell")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="build folder (default build/)")
    parser.add_argument("--site-only", action="store_true",
                        help="re-stage the pages and rebuild the site around the notebooks executed last time "
                             "(their pages say whether that was a quick build)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    names = check_nav()
    src_dir, site_dir = args.out / "site-src", args.out / "site"
    if args.site_only:
        missing = [n for n in names if not (src_dir / "notebooks" / f"{n}.ipynb").is_file()]
        if missing:
            parser.error(f"--site-only: no executed notebook(s) {missing} in {src_dir / 'notebooks'}; build them first")
        stage(src_dir, keep_notebooks=True)
        return build_site(args.out) or print(f"site: {site_dir}/index.html") or 0
    stage(src_dir)
    start = time.perf_counter()
    failures = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        jobs = {pool.submit(execute_notebook, str(ROOT / "notebooks" / f"{n}.py"),
                            str(src_dir / "notebooks" / f"{n}.ipynb"), args.quick, args.timeout): n for n in names}
        for job in concurrent.futures.as_completed(jobs):
            try:
                print(f"  executed {jobs[job]}.py in {job.result():.1f} s", flush=True)
            except Exception as err:  # noqa: BLE001 -- every notebook's failure is reported, then the build fails
                failures.append(str(err))
                print(f"  FAILED {jobs[job]}.py", flush=True)
    if failures:
        print("\n\n".join(failures), file=sys.stderr)
        print(f"docs: {len(failures)} notebook(s) failed; no site was built", file=sys.stderr)
        return 1
    print(f"notebooks: {time.perf_counter() - start:.1f} s ({'quick' if args.quick else 'full'} mode)", flush=True)
    if build_site(args.out):
        return 1
    print(f"site: {site_dir}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
