"""Directories saved by 0.1.0 (``tokenizer_config.json``, format_version 1) keep loading with the same ids.

The fixtures were written by that release, with the ids and fingerprints it
gave (``tests/fixtures/tokenizers_v1``). The fingerprint is what shards and
runs record, so it must not change when the same tokenizer is saved again in
today's layout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from microtransformer.data.corpus import Corpus
from microtransformer.data.shards import prepare_shards, read_meta
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.base import CONFIG_FILE, LEGACY_CONFIG_FILE, is_saved_tokenizer_dir

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tokenizers_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
ENGINES = sorted(EXPECTED["engines"])


@pytest.mark.parametrize("engine", ENGINES)
def test_v1_directory_loads_with_identical_ids(engine: str, tmp_path: Path) -> None:
    want = EXPECTED["engines"][engine]
    assert (FIXTURES / engine / LEGACY_CONFIG_FILE).is_file() and not (FIXTURES / engine / CONFIG_FILE).exists()
    tok = MicroTransformerTokenizer.from_pretrained(FIXTURES / engine)
    texts = EXPECTED["texts"]
    assert tok.engine_name == engine and tok.vocab_size == want["vocab_size"]
    assert [tok.encode(t) for t in texts] == want["ids"]
    assert [tok.encode(t, allowed_special="all", add_special_tokens=True) for t in texts] == want["ids_special"]
    assert tok.fingerprint == want["fingerprint"]

    # saved again in today's layout: same ids, same fingerprint
    tok.save(tmp_path)
    assert (tmp_path / CONFIG_FILE).is_file()
    again = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert [again.encode(t) for t in texts] == want["ids"]
    assert again.fingerprint == want["fingerprint"]


def test_old_shards_validate_against_the_new_layout(tmp_path: Path) -> None:
    """Shards made with a 0.1.0 directory, checked (as `mtx train --shards_dir` does) against its re-save."""
    old_dir = tmp_path / "old"
    shutil.copytree(FIXTURES / "bpe", old_dir)
    old = MicroTransformerTokenizer.from_pretrained(old_dir)
    (tmp_path / "t.txt").write_text("hello world, the lazy fox. 東京\n" * 80, encoding="utf-8")
    corpus = Corpus.from_file(tmp_path / "t.txt")
    prepare_shards(corpus, old, tmp_path / "shards", tokenizer_path=old_dir, show_progress=False)
    meta = read_meta(tmp_path / "shards")
    assert meta.tokenizer_fingerprint == EXPECTED["engines"]["bpe"]["fingerprint"]
    new_dir = old.save(tmp_path / "new")
    assert MicroTransformerTokenizer.from_pretrained(new_dir).fingerprint == meta.tokenizer_fingerprint


def test_hf_tokenizer_config_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    """A directory with only Hugging Face files goes through the import path, not 'damaged config'."""
    tok = MicroTransformerTokenizer.from_pretrained(FIXTURES / "bpe")
    tok.save(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    imported = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert imported.engine_name == "hf-bytelevel"
    assert [imported.encode(t) for t in EXPECTED["texts"]] == EXPECTED["engines"]["bpe"]["ids"]
    assert imported.special_tokens == tok.special_tokens and imported.bos_id == tok.bos_id


def test_saved_directory_detection(tmp_path: Path) -> None:
    """`mtx autoencoder eval/analyze` tell a tokenizer directory from a checkpoint with this."""
    assert is_saved_tokenizer_dir(FIXTURES / "autoencoder")  # 0.1.0 layout
    tok = MicroTransformerTokenizer.from_pretrained(FIXTURES / "bpe")
    tok.save(tmp_path / "new")
    assert is_saved_tokenizer_dir(tmp_path / "new")
    (tmp_path / "new" / CONFIG_FILE).unlink()  # only Hugging Face's files left: importable, but not ours
    assert not is_saved_tokenizer_dir(tmp_path / "new") and not is_saved_tokenizer_dir(tmp_path)
