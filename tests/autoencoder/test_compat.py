"""What the earlier release wrote still loads, and today's code computes what it computed.

``tests/fixtures/autoencoder_v1`` was written before the auto-encoder moved
into ``microtransformer/autoencoder/`` and adopted the run format (see its
README): a pre-training folder in the earlier layout, a tokenizer directory,
results files, and the per-step losses that code computed. The losses are
compared bit for bit where golden.json names this machine's torch build and
CPU model, and elsewhere (floats may differ in their last bits) to a relative 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import shutil
from pathlib import Path

import pytest
import torch

from microtransformer.autoencoder.checkpoint import open_checkpoint
from microtransformer.autoencoder.config import AutoEncoderConfig, PretrainConfig
from microtransformer.autoencoder.pretrain import pretrain_autoencoder
from microtransformer.autoencoder.results import CodebookAnalysis, PretrainHistory, ReconstructionResult
from microtransformer.cli.main import main
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.training import checkpoint as run_format

FIXTURE = Path(__file__).parents[1] / "fixtures" / "autoencoder_v1"


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)


GOLDEN = json.loads((FIXTURE / "golden.json").read_text(encoding="utf-8"))
DOCS = [  # the documents the fixture was trained on (its README's script)
    "\n".join(f"The quick brown fox {i} jumps over the lazy dog, said the teacher." for i in [j % 7 for j in range(60)]),
    "\n".join(f"hello world number {i}; it's a test of chunks and codes!" for i in [j % 5 for j in range(60)]),
]
# bit for bit only on the machine that wrote the fixture: torch's CPU capability string does not name every
# kernel choice (oneDNN picks AMX or AVX-512 paths by CPU model), so two "AVX512" machines can differ in last bits
SAME_PLATFORM = (GOLDEN["torch"], GOLDEN["cpu_capability"], GOLDEN["machine"], GOLDEN.get("cpu_model")) == (
    torch.__version__, torch.backends.cpu.get_cpu_capability(), platform.machine(), cpu_model()
)
TRAIN_KEYS = ("loss", "char_accuracy", "lr", "encoder_lr", "collision_pairs")


def earlier_config(**fields: object) -> PretrainConfig:
    """``PretrainConfig(**fields)`` as the earlier release read it: its defaults were the ``design`` preset's
    pre-training (today's defaults are the shipped run's)."""
    return PretrainConfig.from_dict({**PretrainConfig.preset("design").to_dict(), **fields})


def numbers_close(got: float, want: float) -> bool:
    """Equal within what another CPU's summation order moves (off the fixture's platform)."""
    return math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-9)


def assert_same_numbers(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    if SAME_PLATFORM:
        assert got == want  # bit for bit
    else:
        assert all(numbers_close(g, w) for g, w in zip(got, want)), (got, want)


def assert_same_figures(got: object, want: object) -> None:
    """Two results objects (dataclasses) equal; their floats bit for bit on the fixture's platform, else within
    :func:`numbers_close` (another CPU sums in another order)."""
    if SAME_PLATFORM:
        assert got == want
        return

    def close(a: object, b: object) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return isinstance(a, (int, float)) and isinstance(b, (int, float)) and numbers_close(a, b)
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        return a == b

    assert close(dataclasses.asdict(got), dataclasses.asdict(want)), (got, want)  # type: ignore[call-overload]


def assert_same_run(history: PretrainHistory, want: dict) -> None:
    for key in TRAIN_KEYS:
        assert_same_numbers([getattr(t, key) for t in history.train], want[key])
    evals = [{"step": e.step, "val_loss": e.loss, "val_char_accuracy": e.char_accuracy,
              "val_exact_rate": e.exact_chunk_rate, "val_distinct_codes": e.distinct_codes, "val_chunks": e.chunks}
             for e in history.evals]
    assert [e["step"] for e in evals] == [e["step"] for e in want["evals"]]
    for key in ("val_loss", "val_char_accuracy", "val_exact_rate", "val_distinct_codes", "val_chunks"):
        assert_same_numbers([e[key] for e in evals], [e[key] for e in want["evals"]])


def test_the_documents_are_the_fixtures() -> None:
    import hashlib

    assert hashlib.sha256("\x00".join(DOCS).encode()).hexdigest() == GOLDEN["docs_sha256"]


def test_a_fresh_run_gives_the_earlier_losses() -> None:
    """Same model, config, data and seed: the same per-step losses as before the move (pieces, variants,
    separation, code memory and the encoder freeze all on)."""
    torch.set_num_threads(1)
    model = AutoEncoderConfig.from_dict(GOLDEN["model"])
    result = pretrain_autoencoder(DOCS, model_config=model, config=earlier_config(**GOLDEN["run"]), progress=False)
    assert [t.step for t in result.history.train] == list(range(1, 121))
    assert_same_run(result.history, GOLDEN["fixture_run"])


def test_the_tiny_preset_gives_the_earlier_losses() -> None:
    torch.set_num_threads(1)
    result = pretrain_autoencoder(DOCS, model_config=AutoEncoderConfig.preset("tiny"),
                                  config=earlier_config(**GOLDEN["tiny_run"]), progress=False)
    assert_same_run(result.history, GOLDEN["tiny_preset_run"])


def test_an_earlier_checkpoint_loads_with_the_same_codes() -> None:
    want = GOLDEN["step_120"]
    ref = open_checkpoint(FIXTURE / "ckpt" / "checkpoint_step_120")
    assert ref.legacy and ref.step == 120 and ref.model_config == AutoEncoderConfig.from_dict(GOLDEN["model"])
    assert "pattern" not in ref.pretrain and PretrainConfig.from_dict(ref.pretrain).steps == 120
    model = ref.load_model()
    chunks = [bytes.fromhex(h) for h in want["chunks_hex"]]
    codes = model.encode_chunks(chunks)
    assert codes.tolist() == want["codes"]  # some above 2**31: both memory hashes are read as before
    assert [d.hex() for d in model.decode_indices(codes)] == want["decoded_hex"]
    best = open_checkpoint(FIXTURE / "ckpt" / "checkpoint_best")
    assert best.meta["best"]["val_exact_chunk_rate"] == GOLDEN["fixture_run"]["evals"][-1]["val_exact_rate"]
    assert [t.step for t in ref.history().train] == list(range(10, 121, 10))


def test_an_earlier_checkpoint_resumes_with_the_same_losses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``mtx autoencoder pretrain --resume ckpt/checkpoint_step_120 --steps 180`` on the earlier folder:
    continues at 121 as the earlier code did, and ends with a ``checkpoint_step_180`` name."""
    torch.set_num_threads(1)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "ckpt", ckpt)
    data = tmp_path / "docs"
    data.mkdir()
    for i, doc in enumerate(DOCS):  # one file per document: the same split as the fixture's run
        (data / f"{i}.txt").write_text(doc, encoding="utf-8")
    assert main(["autoencoder", "pretrain", "--resume", str(ckpt / "checkpoint_step_120"), "--steps", "180",
                 "--log_every", "1", "--data_dir", str(data), "--no_progress", "--num_threads", "1"]) == 0
    assert "dataset fingerprint changed" not in caplog.text  # the same chunks as the earlier run
    history = PretrainHistory.from_records(run_format.read_metrics(ckpt))
    assert_same_run(history, GOLDEN["resumed_to_180"])
    assert open_checkpoint(ckpt / "checkpoint_step_180").step == 180
    best = max(history.evals, key=lambda e: (e.char_accuracy, -e.step))
    assert open_checkpoint(ckpt / "checkpoint_best").step == best.step  # the earlier best is carried over
    assert [p.name for p in run_format.list_checkpoints(ckpt)] == sorted({"step_000180", run_format.checkpoint_name(best.step)})
    assert (ckpt / "checkpoint_step_120" / "training_state.json").is_file()  # the earlier files are left as they were
    assert open_checkpoint(ckpt / "checkpoint_step_120").step == 120  # and still load by their names

    # the export the fixture's tokenizer came from, again: the same files (its fingerprint but for the source path)
    assert main(["autoencoder", "export", "--checkpoint", str(ckpt / "checkpoint_step_180"), "--vocab_size", "300",
                 "--data_dir", str(data), "--output_dir", str(tmp_path / "tok"), "--num_threads", "1"]) == 0
    files = ("autoencoder_config.json", "vocab.json", "autoencoder.safetensors")
    new, old = (MicroTransformerTokenizer.from_pretrained(d) for d in (tmp_path / "tok", FIXTURE / "tokenizer"))
    if SAME_PLATFORM:
        assert [(tmp_path / "tok" / f).read_bytes() for f in files] == [(FIXTURE / "tokenizer" / f).read_bytes() for f in files]
    assert {k: v for k, v in new.engine_config.items() if k != "source"} == {k: v for k, v in old.engine_config.items() if k != "source"}
    assert [new.encode(t) for t in GOLDEN["tokenizer"]["texts"]] == GOLDEN["tokenizer"]["ids"]


def test_an_earlier_tokenizer_gives_the_same_ids() -> None:
    want = GOLDEN["tokenizer"]
    tok = MicroTransformerTokenizer.from_pretrained(FIXTURE / "tokenizer")
    assert tok.engine_name == "autoencoder" and tok.vocab_size == want["vocab_size"] and len(tok.codes) == want["n_codes"]
    assert [tok.encode(t) for t in want["texts"]] == want["ids"]
    assert tok.fingerprint == want["fingerprint"]
    assert tok.verify() == []  # the table still equals what the network decodes


def test_the_same_eval_and_analysis_give_the_earlier_figures(tmp_path: Path) -> None:
    """The earlier release's results files read, and today's commands reproduce their figures."""
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n", encoding="utf-8")  # as the README made it
    docs = str(tmp_path / "docs.txt")
    common = ["--data_file", docs, "--num_threads", "1"]
    for phase, target, extra in (("final", FIXTURE / "tokenizer", ["--text_file", docs]),
                                 ("after", FIXTURE / "ckpt" / "checkpoint_step_120", [])):
        out = tmp_path / f"{phase}.json"
        assert main(["autoencoder", "eval", "--phase", phase, "--checkpoint", str(target), "--output", str(out), *common, *extra]) == 0
        old = ReconstructionResult.from_json(json.loads((FIXTURE / "results" / f"{phase}.json").read_text()))
        new = ReconstructionResult.from_json(json.loads(out.read_text()))
        old.created = new.created = old.model_path = new.model_path = ""
        new.model_config = {k: v for k, v in new.model_config.items() if k in old.model_config}
        assert_same_figures(new, old)
    out = tmp_path / "analysis.json"
    assert main(["autoencoder", "analyze", "--checkpoint", str(FIXTURE / "tokenizer"), "--heldout_file", docs,
                 "--ks", "4", "16", "--output", str(out), *common]) == 0
    old_a = CodebookAnalysis.from_json(json.loads((FIXTURE / "results" / "analysis.json").read_text()))
    new_a = CodebookAnalysis.from_json(json.loads(out.read_text()))
    old_a.source = new_a.source = {}
    assert_same_figures(new_a, old_a)
