"""Apply each mutant of tests/mutation/catalogue.py to a copy of the repository, one at a time, run the fast test tier
against it, and print which test killed it (or that it survived).

    python tests/mutation/run.py                 # every mutant (make mutants)
    python tests/mutation/run.py --only gmf-     # mutants whose name starts with gmf-
    python tests/mutation/run.py --full          # the whole fast tier for every mutant (no hint files first)
    python tests/mutation/run.py --out mutants.md

For each mutant the hinted test files run first (fast tier only, stop at the first failure); when they all pass, the
whole fast tier runs (`pytest -m "not slow"`). A mutant is killed when a test fails or the package no longer imports;
it survives when the whole fast tier passes. Exit status 1 when a mutant survives or a catalogue entry is stale (its
text is not found exactly once)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mutation.catalogue import MUTANTS, Mutant  # noqa: E402


def copy_repository(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the repository (no .venv, no caches)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    # a git index, so that tests that list the repository's files (tests/test_architecture.py) see the same files
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)


def pytest(copy: Path, args: list[str], timeout: int) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    try:
        # (tests/test_mutation_catalogue.py fails on any applied mutant, its text gone: it would kill them all)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rf", "-p", "no:cacheprovider",
                               "-m", "not slow", "--ignore", "tests/test_mutation_catalogue.py", *args], cwd=copy,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timeout"
    return proc.returncode, proc.stdout + proc.stderr


def killer(output: str) -> str:
    found = re.search(r"^FAILED (\S+)", output, re.M) or re.search(r"^ERROR (\S+)", output, re.M)
    return found.group(1) if found else "(import or collection error)"


def run_mutant(copy: Path, m: Mutant, full: bool, timeout: int) -> tuple[str, str, float]:
    """(outcome, killing test, seconds); outcome is killed, survived or stale."""
    path = copy / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        return "stale", f"text found {text.count(m.old)} times in {m.file}", 0.0
    start = time.perf_counter()
    try:
        path.write_text(text.replace(m.old, m.new))
        stages = ([list(m.hint)] if m.hint and not full else []) + [["-n", "2", "--dist", "worksteal"]]
        for args in stages:
            code, out = pytest(copy, args, timeout)
            if code in (1, 2, 3, 4, 124):
                return "killed", killer(out) if code != 124 else "(timeout)", time.perf_counter() - start
        return "survived", "", time.perf_counter() - start
    finally:
        path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="run the mutants whose name starts with this")
    p.add_argument("--full", action="store_true", help="run the whole fast tier for every mutant")
    p.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    p.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    p.add_argument("--no-baseline", action="store_true", help="skip the check that the unmutated copy passes")
    args = p.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.name.startswith(args.only)]
    if not chosen:
        print(f"no mutant name starts with {args.only!r}", file=sys.stderr)
        return 2
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="inferlab-mutants-") as tmp:
        copy = Path(tmp)
        copy_repository(copy)
        if not args.no_baseline:
            code, out = pytest(copy, ["-n", "2"], args.timeout)
            if code != 0:
                print(f"the unmutated copy fails the fast tier ({killer(out)}): fix that first", file=sys.stderr)
                return 2
            print("baseline: the unmutated copy passes the fast tier", flush=True)
        hints = "hint files first" if not args.full else "no hint files"
        print(f"{len(chosen)} mutants; fast tier: pytest -m 'not slow' ({hints})",
              flush=True)
        for i, m in enumerate(chosen, 1):
            outcome, by, seconds = run_mutant(copy, m, args.full, args.timeout)
            bad += outcome != "killed"
            rows.append((m, outcome, by, seconds))
            print(f"[{i:>2}/{len(chosen)}] {outcome:<8} {m.name:<38} {seconds:6.1f} s  {by}", flush=True)
    lines = ["| mutant | file | bug | outcome | killed by | s |", "|---|---|---|---|---|---|"]
    lines += [f"| {m.name} | {m.file} | {m.what} | {o} | {by} | {s:.1f} |" for m, o, by, s in rows]
    table = "\n".join(lines)
    print("\n" + table)
    killed = sum(o == "killed" for _, o, _, _ in rows)
    print(f"\n{killed} of {len(rows)} mutants killed by the fast tier")
    if args.out:
        Path(args.out).write_text(table + f"\n\n{killed} of {len(rows)} mutants killed by the fast tier\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
