"""The mutation catalogue stays applicable: every entry's text occurs exactly once in its file (a refactor that moves
the text would otherwise leave a mutant that `make mutants` can only report as stale, not run), its replacement
differs, names are unique and the hinted test files exist."""

from __future__ import annotations

from pathlib import Path

from tests.mutation.catalogue import MUTANTS

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutant_applies_exactly_once():
    stale = [f"{m.name}: found {(ROOT / m.file).read_text().count(m.old)} times in {m.file}" for m in MUTANTS
             if (ROOT / m.file).read_text().count(m.old) != 1]
    assert not stale, "\n".join(stale)


def test_mutants_are_distinct_and_their_hints_exist():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    assert all(m.old != m.new for m in MUTANTS)
    missing = [f"{m.name}: {h}" for m in MUTANTS for h in m.hint if not (ROOT / h).is_file()]
    assert not missing, "\n".join(missing)
