"""Build the documentation site strictly and look at it (run by tests/test_docs.py in CI).

    python docs/check_site.py [SITE_DIR]     # needs the docs tools: pip install -e ".[docs]"

``mkdocs build --strict`` (a broken link, a missing reference or a failing gallery example
fails the build), then, where Debian's Chromium is installed, a headless screenshot of the
home page, the API reference and the gallery example, each checked to show a page rather
than a blank one. Screenshots go to ``SITE_DIR/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("index.html", "api/index.html",
         "generated/gallery/plot_evaluation_report/index.html")


# the docs tools (pip install -e ".[docs]"; ".[dev]" has them too), by import name
TOOLS = ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_gallery")


def missing_tools() -> list[str]:
    import importlib.util

    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False

    return [name for name in TOOLS if not found(name)]


def build(site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(site)], cwd=ROOT, env=env)
    if run.returncode:
        raise SystemExit("docs/check_site.py: mkdocs build --strict failed (its messages are "
                         "above).")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(browser: str, *args: str, wait_ms: int = 0) -> list[str]:
    # --virtual-time-budget lets a page's scripts (and their requests) finish first
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            *([f"--virtual-time-budget={wait_ms}"] if wait_ms else []), *args]


def screenshot(browser: str, page: Path | str, out: Path, size: str = "1280,1600",
               wait_ms: int = 0) -> None:
    """A PNG of ``page`` (a file, or a URL) at ``size`` pixels."""
    url = page.as_uri() if isinstance(page, Path) else page
    subprocess.run(_headless(browser, f"--screenshot={out}", f"--window-size={size}", url,
                             wait_ms=wait_ms), check=True, capture_output=True, timeout=120)


def rendered_dom(browser: str, url: str, wait_ms: int = 20_000) -> str:
    """The page's HTML after its scripts ran."""
    return subprocess.run(_headless(browser, "--dump-dom", url, wait_ms=wait_ms), check=True,
                          capture_output=True, text=True, timeout=120).stdout


def is_blank(png: Path) -> bool:
    """A page that failed to render is one colour; a rendered one has text and figures."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    return float(pixels.std()) < 0.02


def main() -> None:
    site = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "site"
    missing = missing_tools()
    if missing:
        raise SystemExit(f"docs/check_site.py needs the docs tools, missing here: "
                         f"{', '.join(missing)}. Install them with "
                         f"{sys.executable} -m pip install -e \".[docs]\" (the dev extra has "
                         "them too).")
    build(site)
    browser = chromium()
    if browser is None:
        print("Chromium not found (apt-get install chromium): screenshots skipped.")
        return
    shots = site / "screenshots"
    shots.mkdir(exist_ok=True)
    for page in PAGES:
        out = shots / (page.replace("/", "_").removesuffix(".html") + ".png")
        screenshot(browser, site / page, out)
        if is_blank(out):
            raise SystemExit(f"{page} rendered blank (see {out}).")
        print(f"{page}: {out}")


if __name__ == "__main__":
    main()
