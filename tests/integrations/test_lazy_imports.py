"""``import microtransformer`` and everything a torch user touches never import TensorFlow (or matplotlib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_package_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "import microtransformer, microtransformer.integrations\n"
        "from microtransformer import MicroTransformerTokenizer, create_causal_lm_inputs, prepare_input_for_batch\n"
        "import microtransformer.models, microtransformer.sampling, microtransformer.training.trainer\n"
        "import microtransformer.data.loader, microtransformer.cli.main\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'matplotlib'))\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_missing_tensorflow_is_a_clear_error(monkeypatch):
    import microtransformer.integrations as integrations
    from microtransformer.errors import ConfigError
    from microtransformer.tokenization import MicroTransformerTokenizer

    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
    try:
        integrations.require_tensorflow()
    except ConfigError as exc:
        assert "microtransformer[tf]" in str(exc)
    else:
        raise AssertionError("no error without TensorFlow")
    tok = MicroTransformerTokenizer.train_from_iterator(["hello world"] * 5, vocab_size=270)
    try:
        tok(["hi"], return_tensors="tf")
    except ConfigError as exc:
        assert "microtransformer[tf]" in str(exc)
    else:
        raise AssertionError("no error without TensorFlow")
