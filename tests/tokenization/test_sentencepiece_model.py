"""The saved ``sentencepiece.model`` in plain SentencePiece: our ids, special tokens included.

What cannot match, by design: a literal ``"▁"`` in text (SentencePiece reads it
as a space, we keep it: three byte tokens); the ``unk`` role (SentencePiece's
unknown token is its own ``<unk>`` piece, id 0) and ``mask`` (no such field).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from test_contract import TEXTS, TRICKY

from microtransformer.data.corpus import Corpus
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.sentencepiece_bpe import MODEL_FILE

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tokenizers_v1"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    tok = MicroTransformerTokenizer.train(Corpus.builtin(), engine="sentencepiece", vocab_size=700, show_progress=False)
    directory = tok.save(tmp_path_factory.mktemp("sp"))
    return tok, spm.SentencePieceProcessor(model_file=str(directory / MODEL_FILE)), directory


def test_specials_are_control_pieces_with_our_ids(saved) -> None:
    tok, sp, _ = saved
    assert sp.get_piece_size() == tok.vocab_size
    for content, i in tok.special_tokens.items():
        assert sp.piece_to_id(content) == i and sp.is_control(i) and sp.id_to_piece(i) == content
    assert (sp.bos_id(), sp.eos_id(), sp.pad_id()) == (tok.bos_id, tok.eos_id, tok.pad_id)
    assert sp.unk_id() == 0 and tok.unk_id is None
    text = "Hello <|bos|> world"
    assert sp.encode(text, add_bos=True, add_eos=True) == tok.encode(text, add_special_tokens=True)
    assert sp.decode(tok.encode(text, add_special_tokens=True)) == text  # control pieces decode to nothing


@given(text=TEXTS)
@settings(max_examples=150, deadline=None)
def test_ordinary_ids_equal_plain_sentencepiece(saved, text: str) -> None:
    tok, sp, _ = saved
    if "\u2581" in text:  # ours is lossless here; SentencePiece reads it as a space
        assert tok.decode(tok.encode(text)) == text
        return
    assert sp.encode(text) == tok.encode(text)


def test_shared_corpus_and_tricky(saved, shared_data_dir: Path) -> None:
    tok, sp, _ = saved
    text = (shared_data_dir / "war_and_peace.txt").read_text(encoding="utf-8")[:200_000]
    texts = [t for t in TRICKY if "\u2581" not in t] + [text[i : i + 5000] for i in range(0, len(text), 5000)]
    assert sp.encode(texts) == tok.encode_batch(texts)


def test_engine_encodes_exactly_as_before(saved) -> None:
    """The engine runs the trained model; the saved file starts with it byte for byte."""
    tok, _, directory = saved
    saved_bytes = (directory / MODEL_FILE).read_bytes()
    assert saved_bytes.startswith(tok._proto) and len(saved_bytes) > len(tok._proto)
    loaded = MicroTransformerTokenizer.from_pretrained(directory)
    assert loaded._proto == tok._proto and loaded.fingerprint == tok.fingerprint
    old = MicroTransformerTokenizer.from_pretrained(FIXTURES / "sentencepiece")  # 0.1.0: trained model alone
    assert (FIXTURES / "sentencepiece" / MODEL_FILE).read_bytes() == old._proto
