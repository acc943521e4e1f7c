"""Open a built site in headless Chromium and report every problem a reader would meet.

    python docs/site/check.py [build/site] [--screenshots build/screenshots]

Serves the folder on 127.0.0.1 and visits every HTML page (but 404.html) with Playwright driving Debian's Chromium
(/usr/bin/chromium, or $CHROMIUM). A page fails when:
- the browser logs a console error, or the page raises (uncaught exception), or a same-site request fails or
  answers >= 400;
- an image does not display (naturalWidth == 0 after load);
- an output cell holds a Python traceback ("Traceback (most recent call last)" or an ``...Error`` output block);
- an internal link points at a missing file, or at an anchor that its page does not have.
A screenshot of each page (the first screen, 1280 x 900) is saved. Exit status 1 when any page fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

ROOT = Path(__file__).resolve().parents[2]
# As root, Chromium needs --no-sandbox; this machine's closed network refuses Chromium's background connections,
# which would otherwise fill the log (they are not the page's).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Collected in the page: images with their natural width, links, ids, and traceback-looking output blocks.
PAGE_PROBE = """() => {
  const imgs = [...document.images].map(i => ({src: (i.currentSrc || i.src).slice(0, 120), complete: i.complete,
                                                width: i.naturalWidth}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(e => e.name));
  const outputs = [...document.querySelectorAll('.jp-OutputArea-output, .output_area, .jp-RenderedText')]
      .map(e => e.innerText);
  const tracebacks = outputs.filter(t => t.includes('Traceback (most recent call last)') ||
                                         /^\\s*[A-Za-z_.]*(Error|Exception)\\b.*Traceback/s.test(t))
      .map(t => t.slice(0, 200));
  return {imgs, links, ids, tracebacks};
}"""


def chromium_path() -> str | None:
    """$CHROMIUM, else Debian's /usr/bin/chromium, else chromium on PATH; None when there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the checker reports failed requests itself
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages_of(site: Path) -> list[str]:
    """Every HTML page of the site (relative, posix), 404.html aside."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")


def _target_file(site: Path, path: str) -> Path:
    target = site / unquote(path).lstrip("/")
    return target / "index.html" if target.is_dir() or path.endswith("/") else target


def check_site(site: Path, screenshots: Path | None = None, chromium: str | None = None,
               timeout_ms: int = 60_000) -> dict[str, list[str]]:
    """Visit every page of ``site``; returns {page: [problems]} with an entry for every page visited (empty list:
    the page passed). Raises RuntimeError when there is no Chromium or no page."""
    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    chromium = chromium or chromium_path()
    if chromium is None:
        raise RuntimeError("no Chromium: install Debian's package (apt-get install chromium) or set $CHROMIUM")
    pages = pages_of(site)
    if not pages:
        raise RuntimeError(f"{site}: no HTML pages (was the site built?)")
    if screenshots is not None:
        shutil.rmtree(screenshots, ignore_errors=True)
        screenshots.mkdir(parents=True)
    server, base = serve(site)
    problems: dict[str, list[str]] = {}
    ids: dict[str, set[str]] = {}
    links: dict[str, list[str]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for rel in pages:
                found: list[str] = []
                page = context.new_page()
                page.on("console", lambda m, f=found: f.append(f"console {m.type}: {m.text[:300]}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e, f=found: f.append(f"uncaught exception: {str(e)[:300]}"))
                page.on("requestfailed", lambda r, f=found: f.append(f"request failed: {r.url} ({r.failure})")
                        if r.url.startswith(base) else None)
                page.on("response", lambda r, f=found: f.append(f"HTTP {r.status}: {r.url}")
                        if r.url.startswith(base) and r.status >= 400 else None)
                page.goto(base + rel, wait_until="load", timeout=timeout_ms)
                page.wait_for_load_state("networkidle", timeout=timeout_ms)
                probe = page.evaluate(PAGE_PROBE)
                for img in probe["imgs"]:
                    if img["width"] == 0:
                        found.append(f"image does not display (naturalWidth 0): {img['src']}")
                for tb in probe["tracebacks"]:
                    found.append(f"output cell holds a traceback: {tb!r}")
                if screenshots is not None:
                    page.screenshot(path=str(screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")))
                ids[rel] = set(probe["ids"])
                links[rel] = probe["links"]
                problems[rel] = found
                page.close()
            browser.close()
    finally:
        server.shutdown()
    for rel, hrefs in links.items():
        for href in hrefs:
            if not href.startswith(base):
                continue  # external links are not followed (no network here)
            url, fragment = urldefrag(href)
            path = urlparse(url).path
            target = _target_file(site, path)
            if not target.is_file():
                problems[rel].append(f"broken link: {href[len(base) - 1:]} (no file {target.relative_to(site)})")
                continue
            target_rel = target.relative_to(site).as_posix()
            if fragment and target_rel in ids and unquote(fragment) not in ids[target_rel]:
                problems[rel].append(f"broken anchor: {href[len(base) - 1:]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", nargs="?", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "build" / "screenshots")
    args = parser.parse_args(argv)
    problems = check_site(args.site, args.screenshots)
    bad = {page: found for page, found in problems.items() if found}
    for page, found in problems.items():
        print(f"{'FAIL' if found else 'ok  '} {page}")
        for item in found:
            print(f"       {item}")
    print(f"{len(problems) - len(bad)} of {len(problems)} pages pass; screenshots in {args.screenshots}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
