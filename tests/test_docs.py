"""The documentation site builds in strict mode and renders (about a minute)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs_gallery", reason="the docs tools come with the dev extra")


def test_the_site_builds_strictly_and_its_pages_render(tmp_path):
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "check_site.py"), str(site)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    for name in ("EncoderEmbedder", "StackingEmbedder", "BiLSTMClassifier", "TunedThresholds",
                 "html_report", "load_table", "explain", "progress_to_stderr"):
        assert f'id="skstack.{name}"' in api
    # numpydoc's Sphinx roles render as code, linked to the public names (docs/hooks.py)
    assert ":meth:" not in api and ":func:" not in api and ":class:" not in api
    assert '<a href="#skstack.HybridLoss"><code>HybridLoss</code></a>' in api
    home = (site / "index.html").read_text()
    assert 'id="install"' in home and 'id="quickstart"' in home
    gallery = site / "generated" / "gallery" / "plot_evaluation_report" / "index.html"
    assert "macro-F1" in gallery.read_text()  # the example ran and its output is shown


def test_every_page_holds_each_section_once():
    for page in (ROOT / "docs").glob("*.md"):
        headings = [line for line in page.read_text(encoding="utf-8").splitlines()
                    if line.startswith("## ")]
        twice = sorted({h for h in headings if headings.count(h) > 1})
        assert not twice, f"{page.name} repeats {twice}"
