"""The built book in headless Chromium: math typeset, images loaded with real alt text, nothing too wide.

At 1280 px no code, output or math block may be wider than the text column
(wide tables scroll in their own box), every image has an alt text that says
what it shows (not a file name), and the report's verdicts are CSS badges.

Needs the HTML (``make html``) and Debian's ``chromium`` and ``chromium-driver``
(``.ci/run`` installs them). Pages are served from a local HTTP server, and
the test also checks that no page fetched anything from another host (the
book must work offline).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from rec_lib.paths import repo_root
from tests.conftest import NOT_MIGRATED

HTML = repo_root() / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done("typeset")).catch(e => done("error: " + e));
  } else if (Date.now() - start > 15000) {
    done(document.querySelector('.math') ? "mathjax never loaded" : "no math");
  } else { setTimeout(poll, 100); }
})();
"""

INSPECT = """
const maths = Array.from(document.querySelectorAll('span.math, div.math'));
const raw = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80));
const clone = document.body.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
const text = clone.textContent;
const imgs = Array.from(document.images).filter(i => !i.closest('.sidebar-primary-items__start'));
const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
const foreign = performance.getEntriesByType('resource').map(r => r.name)
  .filter(u => !u.startsWith(location.origin) && !u.startsWith('data:'));
const blocks = Array.from(document.querySelectorAll(
  'div.highlight pre, div.cell_output pre, div.output pre, div.math, mjx-container[display="true"]'));
const wide = blocks.filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 2)
  .map(e => e.tagName.toLowerCase() + ' ' + (e.scrollWidth - e.clientWidth) + 'px: ' + e.textContent.trim().slice(0, 60));
const noalt = imgs.filter(i => {
  const a = (i.getAttribute('alt') || '').trim();
  return a.length < 8 || /\\.(png|jpe?g|svg|gif)$/i.test(a) || /^(\\.\\.\\/|_images\\/)/.test(a);
}).map(i => i.src.split('/').pop() + ' alt=' + JSON.stringify(i.getAttribute('alt')));
const badges = Array.from(document.querySelectorAll('.verdict')).map(b => ({
  text: b.textContent.trim(), width: b.getBoundingClientRect().width,
  bg: getComputedStyle(b).backgroundColor}));
return {n_math: maths.length, n_typeset: document.querySelectorAll('mjx-container').length,
        raw: raw, raw_delims: (text.match(/\\\\\\(|\\\\\\[/g) || []).length,
        n_images: imgs.length, broken: broken, foreign: foreign, wide: wide, noalt: noalt, badges: badges,
        glyphs: (document.body.textContent.match(/[\u2705\u274c\u2796]/gu) || []).length};
"""


def _pages() -> list[Path]:
    if not HTML.exists():
        return []
    skip = {"genindex.html", "search.html"}
    return sorted(p for p in HTML.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book at {HTML}; run `make html` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run does)")
    import os

    # No outbound request from the test suite: Selenium Manager is never needed
    # (the driver's path is given) and must not send usage statistics.
    os.environ["SE_AVOID_STATS"] = "true"
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,2000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def test_report_page_shows_styled_verdict_badges(server, browser):
    browser.get(f"{server}/book/reproducibility.html")
    info = browser.execute_script(INSPECT)
    assert len(info["badges"]) >= 10, f"the report shows {len(info['badges'])} verdict badges"


def test_book_has_pages():
    names = {p.name for p in _pages()}
    assert {"intro.html", "data_protocols.html"} <= names, f"built pages: {sorted(names)}"


@pytest.mark.parametrize("page", [p.relative_to(HTML).as_posix() for p in _pages()] or ["index.html"])
def test_page_typesets_math_and_loads_images(page, server, browser):
    browser.get(f"{server}/{page}")
    state = browser.execute_async_script(WAIT_FOR_MATHJAX)
    info = browser.execute_script(INSPECT)
    assert not info["foreign"], f"{page} fetched from other hosts: {info['foreign'][:3]}"
    if info["n_math"]:
        assert state == "typeset", f"{page}: MathJax state {state!r}"
        assert not info["raw"], f"{page}: math left untypeset: {info['raw'][:3]}"
        assert info["n_typeset"] >= info["n_math"]
    assert info["raw_delims"] == 0, f"{page}: raw \\( or \\[ left in the rendered text"
    assert not info["broken"], f"{page}: images that did not load: {info['broken'][:3]}"
    assert not info["wide"], f"{page}: {len(info['wide'])} code, output or math blocks wider than the column: " \
                             f"{info['wide'][:5]}"
    assert not info["noalt"], f"{page}: images without a real alt text: {info['noalt'][:5]}"
    if Path(page).stem not in NOT_MIGRATED:  # their claims tables still print the old glyphs (issue 12)
        assert info["glyphs"] == 0, f"{page}: verdict glyphs that depend on the reader's fonts"
    for badge in info["badges"]:
        assert badge["text"] in ("holds", "does not hold", "inconclusive", "passes", "fails"), badge
        assert badge["width"] > 10 and badge["bg"] not in ("rgba(0, 0, 0, 0)", "transparent"), badge
