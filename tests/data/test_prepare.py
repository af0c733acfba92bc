"""Sharded ``prepare_shards``: fixed-size files read as one stream, the old layout, parallel encode, resume after a kill."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from microtransformer.cli.main import main
from microtransformer.data.corpus import Corpus
from microtransformer.data.loader import ShardDataset
from microtransformer.data.prepare import STATE_FILE, prepare_shards
from microtransformer.data.shards import TokenStream, read_meta
from microtransformer.tokenization import MicroTransformerTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def tok() -> MicroTransformerTokenizer:
    from pydoc_data.topics import topics

    return MicroTransformerTokenizer.train_from_iterator(list(topics.values())[:30], engine="bpe", vocab_size=500)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


# ------------------------------------------------------------------ layout
def test_fixed_size_files_read_as_one_stream(tmp_path: Path, tok) -> None:
    corpus = Corpus.builtin()
    one = prepare_shards(corpus, tok, tmp_path / "one", show_progress=False)
    many = prepare_shards(corpus, tok, tmp_path / "many", shard_tokens=5000, show_progress=False)
    assert one.splits["train"].files == ("train_00000.bin",) and len(many.splits["train"].files) > 10
    for split in ("train", "val"):
        info = many.splits[split]
        assert set(info.file_tokens[:-1]) == {5000} and 0 < info.file_tokens[-1] <= 5000
        assert info.files == tuple(f"{split}_{i:05d}.bin" for i in range(len(info.files)))
        a, b = TokenStream.open(tmp_path / "one", split), TokenStream.open(tmp_path / "many", split)
        assert len(a) == len(b) == info.tokens
        np.testing.assert_array_equal(a[:], b[:])  # the same ids, cut into files
        np.testing.assert_array_equal(b[4990:5010], a[4990:5010])  # across a file boundary
        assert b[5000] == a[5000] and b[-1] == a[-1]
    on_disk = json.loads((tmp_path / "many" / "meta.json").read_text())
    assert on_disk["format_version"] == 2 and on_disk["shard_tokens"] == 5000
    # the loader, and so the trainer, draws the same windows from both
    x1, y1 = ShardDataset(tmp_path / "one", 64).get_batch("train", 32, np.random.default_rng(3))
    x2, y2 = ShardDataset(tmp_path / "many", 64).get_batch("train", 32, np.random.default_rng(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_the_single_file_layout_of_earlier_releases_still_loads(tmp_path: Path, capsys) -> None:
    """``tests/fixtures/legacy_shards/v1``: one ``train.bin``/``val.bin``, format_version 1 (see its README)."""
    legacy = FIXTURES / "legacy_shards" / "v1"
    golden = json.loads((FIXTURES / "legacy_shards" / "golden.json").read_text())
    ds = ShardDataset(legacy, block_size=8)
    for split in ("train", "val"):
        assert ds.num_tokens(split) == golden[split]["tokens"]
        x, y = ds.get_batch(split, 4, np.random.default_rng(0))
        assert x.tolist() == golden[split]["x"] and y.tolist() == golden[split]["y"]
    # today's prepare writes the same ids in the new layout
    tok_dir = FIXTURES / "legacy_runs" / "gpt" / "tokenizer"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 30, encoding="utf-8")
    (src / "b.txt").write_text("the lazy dog sleeps; the quick fox runs. " * 30, encoding="utf-8")
    tok = MicroTransformerTokenizer.from_pretrained(tok_dir)
    prepare_shards(Corpus.from_dir(src), tok, tmp_path / "new", val_fraction=0.3, show_progress=False)
    for split in ("train", "val"):
        assert (tmp_path / "new" / f"{split}_00000.bin").read_bytes() == (legacy / f"{split}.bin").read_bytes()
    # and trains (the tokenizer must be named: that meta.json records none)
    run = tmp_path / "run"
    assert main(["train", "--shards_dir", str(legacy), "--tokenizer_path", str(tok_dir), "--out_dir", str(run),
                 "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "8", "--batch_size", "2",
                 "--max_steps", "2", "--eval_interval", "2", "--eval_iters", "1", "--device", "cpu"]) == 0
    # --overwrite of an old-layout directory leaves only the new layout
    old = tmp_path / "old"
    (old).mkdir()
    for f in legacy.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    prepare_shards(Corpus.from_dir(src), tok, old, val_fraction=0.3, overwrite=True, show_progress=False)
    assert sorted(p.name for p in old.iterdir()) == ["meta.json", "train_00000.bin", "val_00000.bin"]


@pytest.mark.parametrize("engine", ["bpe", "reference"])
def test_parallel_encoding_gives_the_ids_of_one_thread(tmp_path: Path, engine: str, caplog) -> None:
    """Threads (bpe: tiktoken releases the GIL) or worker processes (reference: pure Python) change nothing."""
    from pydoc_data.topics import topics

    tok = MicroTransformerTokenizer.train_from_iterator(list(topics.values())[:20], engine=engine, vocab_size=300)
    corpus = Corpus.builtin()
    prepare_shards(corpus, tok, tmp_path / "one", num_threads=1, show_progress=False)
    with caplog.at_level(logging.INFO, logger="microtransformer.data.prepare"):
        prepare_shards(corpus, tok, tmp_path / "two", num_threads=2, chunk_chars=50_000, shard_tokens=20_000,
                       show_progress=False)
    on_processes = any("on 2 worker processes" in r.message for r in caplog.records)
    assert on_processes == (engine == "reference")
    for split in ("train", "val"):
        np.testing.assert_array_equal(TokenStream.open(tmp_path / "one", split)[:], TokenStream.open(tmp_path / "two", split)[:])


# ------------------------------------------------------------------ resume
_KILLED_CHILD = """
import sys, threading
from microtransformer.data.corpus import Corpus
from microtransformer.data.prepare import prepare_shards
from microtransformer.tokenization import MicroTransformerTokenizer

tok = MicroTransformerTokenizer.from_pretrained(sys.argv[1])
real, calls = tok.encode_batch, []

def encode_batch(texts, **kwargs):  # the 9th batch never finishes: the parent kills us there
    calls.append(1)
    if len(calls) == 9:
        print("stuck", flush=True)
        threading.Event().wait()
    return real(texts, **kwargs)

tok.encode_batch = encode_batch
prepare_shards(Corpus.builtin(), tok, sys.argv[2], chunk_chars=20_000, shard_tokens=20_000, num_threads=1,
               show_progress=False)
"""


def test_a_killed_prepare_continues_from_its_last_complete_shard(tmp_path: Path, tok, caplog) -> None:
    tok.save(tmp_path / "tok")
    out = tmp_path / "shards"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(tmp_path / "tok"), str(out)],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "stuck"
        time.sleep(0.2)  # let the batch before it reach the files
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    state = json.loads((out / STATE_FILE).read_text())
    done = state["splits"]["train"]["files"]
    assert done and not (out / "meta.json").exists()
    left = {p.name: p.stat().st_size for p in out.iterdir()}
    partial = f"train_{len(done):05d}.bin.partial"
    assert left[partial] > state["splits"]["train"]["open_tokens"] * 2  # written past the state: cut back on resume

    with caplog.at_level(logging.INFO, logger="microtransformer.data.prepare"):
        meta = prepare_shards(Corpus.builtin(), tok, out, shard_tokens=20_000, show_progress=False)
    assert any(f"continuing the interrupted prepare in {out}" in r.message for r in caplog.records)
    whole = prepare_shards(Corpus.builtin(), tok, tmp_path / "whole", shard_tokens=20_000, show_progress=False)
    assert meta == whole
    assert _files(out) == _files(tmp_path / "whole")  # every shard and meta.json, byte for byte; no state file left


def test_a_prepare_stopped_by_an_error_continues_and_a_changed_setting_starts_over(tmp_path: Path, tok, monkeypatch, caplog) -> None:
    out = tmp_path / "s"
    real, calls = tok.encode_batch, []

    def failing(texts, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a batch
        return real(texts, **kwargs)

    monkeypatch.setattr(tok, "encode_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_shards(Corpus.builtin(), tok, out, chunk_chars=20_000, shard_tokens=20_000, num_threads=1, show_progress=False)
    monkeypatch.undo()
    assert (out / STATE_FILE).is_file()
    with caplog.at_level(logging.WARNING, logger="microtransformer.data.prepare"):
        prepare_shards(Corpus.builtin(), tok, out, val_fraction=0.2, shard_tokens=20_000, show_progress=False)
    assert any("starting over" in r.message for r in caplog.records)
    prepare_shards(Corpus.builtin(), tok, tmp_path / "fresh", val_fraction=0.2, shard_tokens=20_000, show_progress=False)
    assert _files(out) == _files(tmp_path / "fresh")


def test_data_prepare_command_writes_numbered_shards(tmp_path: Path, tok, capsys) -> None:
    tok.save(tmp_path / "tok")
    assert main(["data", "prepare", "--tokenizer_path", str(tmp_path / "tok"), "--corpus", "builtin",
                 "--output_dir", str(tmp_path / "s"), "--shard_tokens", "50000"]) == 0
    out = capsys.readouterr().out
    meta = read_meta(tmp_path / "s")
    assert f"{len(meta.splits['train'].files)} file(s)" in out and len(meta.splits["train"].files) > 1
