"""The ``inferlab`` command line (also ``python -m inference``), one module per command group:

    fit.py          inferlab fit | compare | check | models
    grids.py        inferlab em | select               (seeds x K grids)
    calibration.py  inferlab sbc | geweke
    benchmark.py    inferlab benchmark gaussian-mf | grid-mrf
    grid.py         inferlab grid small                (the course's 3 x 3 grid MRF, three ways, full precision)
    data.py         inferlab data
    common.py       model, data and method options from the registry; errors

    inferlab fit poisson-mf --data lastfm --method cavi -K 40 --iters 200 --seed 0 --out DIR
    inferlab compare poisson-mf --data synthetic --seed 0 --out DIR
    inferlab check bayes-gmm                           # the derivation checks on a problem drawn from the prior
    inferlab --plugin examples/hierarchical_poisson.py fit hierarchical-poisson --data pumps --method gibbs
    inferlab models                                    # every registered model, its capabilities and data sets

Models come from the registry (models.registry); ``--plugin FILE_OR_MODULE`` (or INFERLAB_PLUGINS, separated by
os.pathsep) imports modules that register more. Errors in the input (bad counts, K < 1, unknown names, unreadable
files, a model without the capability a method needs) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def _plugins(argv: list[str]) -> list[str]:
    """--plugin values (anywhere before the command) and INFERLAB_PLUGINS, in order."""
    found = [p for p in os.environ.get("INFERLAB_PLUGINS", "").split(os.pathsep) if p]
    for i, a in enumerate(argv):
        if a == "--plugin" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif a.startswith("--plugin="):
            found.append(a.split("=", 1)[1])
    return found


def build_parser() -> argparse.ArgumentParser:
    from inference.cli import benchmark, calibration, data, fit, grid, grids

    p = argparse.ArgumentParser(prog="inferlab", description="Bayesian latent-variable models, fitted every way.")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="import a module or Python file that registers more models (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (fit, grids, calibration, benchmark, grid, data):
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from models import registry

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        for plugin in _plugins(argv):
            registry.load_plugin(plugin)
    except (ValueError, ImportError) as exc:
        print(f"inferlab: error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("inferlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # expected failures print one line; anything else is a bug and keeps its traceback
        from models.datasets import DataFileError  # (imported here: --help should not load torch)

        if isinstance(exc, (ValueError, TypeError, DataFileError, FileNotFoundError)):
            print(f"inferlab: error: {exc}", file=sys.stderr)
            return 2
        raise
