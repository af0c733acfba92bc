"""``examples/tensorflow_keras.py`` (the tutorial's TensorFlow script on our tokenizer) runs, and its loss falls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tensorflow_keras_example(tf, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, str(REPO / "examples" / "tensorflow_keras.py"), "--out_dir", str(tmp_path / "tf_model"),
           "--steps", "200", "--max_chars", "30000"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    losses = [float(v) for v in re.findall(r"^Epoch \d+ Loss: ([\d.]+)$", proc.stdout, re.M)]
    assert len(losses) >= 3 and losses[-1] < losses[0] - 1.0, proc.stdout  # a few hundred steps: the loss falls
    assert "Predicted next token:" in proc.stdout and "Greedy:" in proc.stdout
    assert (tmp_path / "tf_model" / "model.keras").is_file()
    assert (tmp_path / "tf_model" / "tokenizer" / "tokenizer_config.json").is_file()
    assert not (tmp_path / "runs").exists()  # wrote only where it was told
