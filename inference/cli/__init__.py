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
os.pathsep) imports modules that register more. Sizes, counts and the output folder are checked before any work.

Exit status (an expected failure prints one line ``inferlab: error: ...`` on stderr; ``--debug`` shows the
traceback instead):
    0    success
    1    a check failed (``check``, ``sbc``/``geweke`` flagged the sampler, ``grid small`` did not converge)
    2    bad input: usage, a size, a file or data set that cannot be read, a model without the capability asked for
    3    the fit failed: it diverged or gave non-finite estimates (nothing is saved)
    4    an operating-system error while reading or writing (disk full, permissions)
    70   an internal error (a bug: please report it with the ``--debug`` traceback)
    130  interrupted (Ctrl-C); 143 terminated (SIGTERM). Finished sweep tasks are kept; no file is half-written.
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
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (fit, grids, calibration, benchmark, grid, data):
        group.add_parsers(sub)
    return p


EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_FIT_FAILED, EXIT_OS, EXIT_INTERNAL = 0, 1, 2, 3, 4, 70


def _exit_status(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message of an exception raised by a command."""
    from inference.assemble import FitFailed
    from models.datasets import DataFileError  # (imported here: --help should not load torch)

    if isinstance(exc, FitFailed):
        return EXIT_FIT_FAILED, f"inferlab: error: {exc}"
    if isinstance(exc, (ValueError, TypeError, DataFileError, FileNotFoundError, NotADirectoryError,
                        IsADirectoryError)):
        return EXIT_USAGE, f"inferlab: error: {exc}"
    if isinstance(exc, OSError):
        return EXIT_OS, f"inferlab: error: {exc}"
    return EXIT_INTERNAL, (f"inferlab: internal error: {type(exc).__name__}: {exc} (a bug: rerun with --debug for "
                           "the traceback and please report it)")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: temporary files are removed, sweep workers are stopped


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    from models import registry

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        for plugin in _plugins(argv):
            registry.load_plugin(plugin)
    except (ValueError, ImportError) as exc:
        if debug:
            raise
        print(f"inferlab: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, argparse printed the message)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    import warnings

    warnings.formatwarning = lambda message, category, *rest, **kw: f"inferlab: warning: {message}\n"
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from inference.cli.common import check_output_folder

        for flag in ("out", "plot"):
            if getattr(args, flag, None):
                check_output_folder(getattr(args, flag), f"--{flag}")
        return args.func(args)
    except KeyboardInterrupt:
        print("inferlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # expected failures print one line; --debug shows the traceback
        if args.debug:
            raise
        status, message = _exit_status(exc)
        print(message, file=sys.stderr)
        return status
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
