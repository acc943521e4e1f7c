"""The documentation site: the browser checker finds each kind of broken page (fast, on a hand-made site), and the
site built in quick mode (every notebook executed with INFERLAB_NB_QUICK=1, then mkdocs --strict) passes it.

Chromium is Debian's package; the `chromium` fixture (tests/conftest.py) installs it when it is missing."""

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, have_data, needs_lastfm


def _load(name):
    spec = importlib.util.spec_from_file_location(f"site_{name}", ROOT / "docs" / "site" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load("check")
build = _load("build")

PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _page(body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>"


def test_checker_reports_each_kind_of_broken_page(tmp_path, chromium):
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "index.html").write_text(_page(
        f"<h1 id='top'>ok</h1><img src='data:image/png;base64,{PNG_1x1}'><a href='sub/page.html#there'>a</a>"
        "<a href='#top'>self</a><a href='https://example.org/x'>external, not followed</a>"))
    (site / "sub" / "page.html").write_text(_page("<p id='there'>fine</p><a href='../index.html'>home</a>"))
    (site / "console.html").write_text(_page("<script>console.error('boom')</script>"))
    (site / "raises.html").write_text(_page("<script>undefinedFunction()</script>"))
    (site / "image.html").write_text(_page("<img src='missing.png'>"))
    (site / "link.html").write_text(_page("<a href='nowhere.html'>x</a><a href='index.html#absent'>y</a>"))
    (site / "traceback.html").write_text(_page(
        "<div class='jp-OutputArea-output'><pre>Traceback (most recent call last):\n  File x\nValueError: bad</pre>"
        "</div>"))
    (site / "404.html").write_text(_page("<img src='never-checked.png'>"))
    found = check.check_site(site, screenshots=tmp_path / "shots", chromium=chromium)
    assert set(found) == {"index.html", "sub/page.html", "console.html", "raises.html", "image.html", "link.html",
                          "traceback.html"}
    assert found["index.html"] == [] and found["sub/page.html"] == []
    assert any("console error: boom" in p for p in found["console.html"])
    assert any("uncaught exception" in p and "undefinedFunction" in p for p in found["raises.html"])
    assert any("naturalWidth 0" in p for p in found["image.html"])
    assert any("HTTP 404" in p and "missing.png" in p for p in found["image.html"])
    assert any("broken link: /nowhere.html" in p for p in found["link.html"])
    assert any("broken anchor: /index.html#absent" in p for p in found["link.html"])
    assert any("traceback" in p for p in found["traceback.html"])
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == sorted(
        f"{name}.png" for name in ("index", "sub__page", "console", "raises", "image", "link", "traceback"))


def test_every_notebook_is_in_the_site_nav(tmp_path):
    assert sorted(build.check_nav()) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    (tmp_path / "extra.py").write_text("# %%\n")
    with pytest.raises(SystemExit, match=r"not in the nav: \['extra'\]"):
        build.check_nav(tmp_path)


def test_doc_mentions_become_links_outside_code_only():
    text = ("see docs/ARCHITECTURE.md (and docs/REFERENCE.md section 1); `docs/KEEP.md`, [x](docs/LINKED.md)\n"
            "    docs/INDENTED.md\n```\ndocs/FENCED.md\n```\n")
    out = build.link_doc_mentions(text, "docs/")
    assert "[docs/ARCHITECTURE.md](docs/ARCHITECTURE.md)" in out
    assert "(and [docs/REFERENCE.md](docs/REFERENCE.md) section 1)" in out
    for kept in ("`docs/KEEP.md`", "[x](docs/LINKED.md)", "    docs/INDENTED.md\n", "\ndocs/FENCED.md\n"):
        assert kept in out


@needs_lastfm
@pytest.mark.skipif(not have_data("netflix/netflix_incomplete.txt"), reason="Netflix files not available")
@pytest.mark.skipif(not have_data("movielens-100k/u1.test"), reason="MovieLens-100K not available")
@pytest.mark.slow
def test_quick_site_builds_and_every_page_passes_in_chromium(tmp_path, chromium):
    """`make docs-quick`: executes every notebook (quick mode), builds with mkdocs --strict, then the browser check.
    Screenshots are kept in build/screenshots-quick for a reader of the CI log."""
    out = tmp_path / "build"
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "site" / "build.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for nb in (out / "site-src" / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o["output_type"] == "error"]
        assert not errors, f"{nb.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    site = out / "site"
    pages = check.pages_of(site)
    for expected in ["index.html", "docs/ARCHITECTURE.html", "docs/ADDING_A_MODEL.html", "api/poisson_mf.html"] + [
            f"notebooks/{name}.html" for name in build.nav_notebooks()]:
        assert expected in pages
    found = check.check_site(site, screenshots=ROOT / "build" / "screenshots-quick", chromium=chromium)
    bad = {page: problems for page, problems in found.items() if problems}
    assert not bad, json.dumps(bad, indent=1)[:6000]
    # the notebooks' figures reached the pages
    html = (site / "notebooks" / "poisson_mf_hw5.html").read_text()
    assert html.count("<img") >= 3
