"""Every BPE engine's saved directory is a Hugging Face tokenizer directory with our ids.

Loaded with ``AutoTokenizer`` and ``PreTrainedTokenizerFast(tokenizer_file=...)``
and held to our ids, masks and special-token ids on the contract tests'
hypothesis strategy and on shared-corpus text; and a directory written by
HF's own ``save_pretrained`` loads back into ours with the same ids. Offline.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may reach the hub

import logging
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from microtransformer.data.corpus import Corpus
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.tokenization.interop.hf_export import all_split_merges, bytelevel_bpe

from test_contract import TEXTS, TRICKY

ENGINES = ["bpe", "hf-bytelevel", "sentencepiece", "reference"]
VOCAB = 700
HYPOTHESIS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", params=ENGINES)
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(our tokenizer, its directory, AutoTokenizer on it, PreTrainedTokenizerFast on its tokenizer.json)."""
    tok = MicroTransformerTokenizer.train(Corpus.builtin(), engine=request.param, vocab_size=VOCAB, show_progress=False)
    directory = tok.save(tmp_path_factory.mktemp(request.param))
    auto = AutoTokenizer.from_pretrained(directory)
    # tokenizer.json cannot say "special-token text in input is ordinary text" (HF's encode_special_tokens
    # is not serialized); tokenizer_config.json does, and here we pass it as HF documents.
    fast = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), split_special_tokens=True)
    return tok, directory, auto, fast


def _same_ids(tok, hf, text: str) -> None:
    assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert hf(text, add_special_tokens=True)["input_ids"] == tok.encode(text, add_special_tokens=True)


@given(text=TEXTS)
@HYPOTHESIS
def test_ids_equal_on_contract_strategy(saved, text: str) -> None:
    tok, _, auto, fast = saved
    _same_ids(tok, auto, text)
    _same_ids(tok, fast, text)
    assert auto(text)["attention_mask"] == [1] * len(auto(text)["input_ids"])


@pytest.mark.parametrize("text", TRICKY)
def test_ids_equal_on_tricky_strings(saved, text: str) -> None:
    tok, _, auto, fast = saved
    _same_ids(tok, auto, text)
    _same_ids(tok, fast, text)


def test_ids_equal_on_shared_corpus(saved, shared_data_dir: Path) -> None:
    tok, _, auto, fast = saved
    texts = []
    for name in ("tinyshakespeare.txt", "moby_dick.txt", "war_and_peace.txt"):
        data = (shared_data_dir / name).read_text(encoding="utf-8", errors="replace")
        texts += [data[i : i + 3000] for i in range(0, 300_000, 30_000)]
    ours = tok.encode_batch(texts)
    assert auto(texts, add_special_tokens=False)["input_ids"] == ours
    assert fast(texts, add_special_tokens=False)["input_ids"] == ours
    assert auto.decode(ours[0]) == texts[0]


def test_special_token_ids_and_roles(saved) -> None:
    tok, _, auto, fast = saved
    assert len(auto) == len(fast) == tok.vocab_size
    for name in ("bos", "eos", "pad", "mask"):
        assert getattr(auto, f"{name}_token_id") == getattr(tok, f"{name}_id"), name
    assert fast.pad_token_id == tok.pad_id and fast.padding_side == tok.padding_side == auto.padding_side
    assert set(auto.all_special_ids) == set(tok.special_ids)
    for content, i in tok.special_tokens.items():
        assert auto.convert_tokens_to_ids(content) == fast.convert_tokens_to_ids(content) == i
    ids = tok.encode("a <|bos|> b", allowed_special="all")
    assert auto.decode(ids) == tok.decode(ids)
    assert auto.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_truncation_special_tokens(saved, side: str) -> None:
    tok, _, auto, fast = saved
    texts = ["short", "a somewhat longer sentence with more tokens 🙂", "", "<|pad|> as text"]
    for hf in (auto, fast):
        for kwargs in (
            dict(padding=True),
            dict(padding=True, add_special_tokens=True),
            dict(padding="max_length", truncation=True, max_length=6, add_special_tokens=True),
            dict(padding=True, pad_to_multiple_of=8),
            dict(truncation=True, max_length=3, add_special_tokens=True),
        ):
            kwargs.setdefault("add_special_tokens", False)
            theirs = hf(texts, padding_side=side, **kwargs)
            ours = tok(texts, padding_side=side, **kwargs)
            assert theirs["input_ids"] == ours["input_ids"], kwargs
            assert theirs["attention_mask"] == ours["attention_mask"], kwargs
    arrays = auto(texts, padding=True, return_tensors="np", add_special_tokens=False)
    assert arrays["input_ids"].tolist() == tok(texts, padding=True, return_tensors="np")["input_ids"].tolist()


def test_hf_save_pretrained_loads_back(saved, tmp_path: Path) -> None:
    tok, _, auto, _ = saved
    auto.save_pretrained(tmp_path)
    assert not (tmp_path / "microtransformer.json").exists()
    back = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert back.vocab_size == tok.vocab_size and back.special_tokens == tok.special_tokens
    assert (back.bos_id, back.eos_id, back.pad_id, back.mask_id) == (tok.bos_id, tok.eos_id, tok.pad_id, tok.mask_id)
    assert back.padding_side == tok.padding_side
    texts = [*TRICKY, *Corpus.builtin().iter_documents()][:80]
    assert back.encode_batch(texts) == tok.encode_batch(texts)
    assert back.token_bytes().tolist() == tok.token_bytes().tolist()
    assert [back.decode(back.encode(t)) for t in TRICKY] == TRICKY
    # a tokenizer.json alone is enough too
    assert MicroTransformerTokenizer.from_pretrained(tmp_path / "tokenizer.json").encode_batch(texts) == back.encode_batch(texts)


def test_our_directory_keeps_loading_as_ours(saved) -> None:
    tok, directory, _, _ = saved
    loaded = MicroTransformerTokenizer.from_pretrained(directory)
    assert type(loaded) is type(tok) and loaded.fingerprint == tok.fingerprint


def test_model_max_length_exported(tmp_path: Path) -> None:
    tok = MicroTransformerTokenizer.train_from_iterator(["hello world"] * 5, vocab_size=300, special_tokens="nanochat")
    tok.model_max_length = 256
    tok.save(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).model_max_length == 256
    assert MicroTransformerTokenizer.from_pretrained(tmp_path).model_max_length == 256


def test_autoencoder_writes_no_tokenizer_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "tokenizers_v1" / "autoencoder"
    tok = MicroTransformerTokenizer.from_pretrained(fixture)
    (tmp_path / "tokenizer.json").write_text("{}")  # a stale export from an earlier save would give other ids
    with caplog.at_level(logging.WARNING):
        tok.save(tmp_path)
    assert "no Hugging Face tokenizer.json written" in caplog.text and "character boundaries" in caplog.text
    assert not (tmp_path / "tokenizer.json").exists() and not (tmp_path / "tokenizer_config.json").exists()
    assert MicroTransformerTokenizer.from_pretrained(tmp_path).encode("hello world") == tok.encode("hello world")


# ------------------------------------------------------- why every split is listed
def test_tiktoken_rule_needs_whole_chunk_lookup() -> None:
    """tiktoken returns a chunk that is itself a token without merging; HF needs ignore_merges for that."""
    ranks = [bytes([b]) for b in range(256)] + [b"xyz"]  # "xyz" cannot be built by merges
    enc = tiktoken.Encoding("t", pat_str=r"\S+|\s+", mergeable_ranks={t: i for i, t in enumerate(ranks)}, special_tokens={})
    hf = bytelevel_bpe(ranks, r"\S+|\s+")
    for text in ["xyz", "xyz xyzw", "wxyz xyz"]:
        assert hf.encode(text).ids == enc.encode_ordinary(text)
    assert enc.encode_ordinary("xyz") == [256]


def test_every_split_is_a_merge_ranked_by_the_token() -> None:
    """tiktoken merges any adjacent pair whose concatenation is a token, by that token's rank."""
    ranks = [bytes([b]) for b in range(256)] + [b"bc", b"ab", b"abc", b"cab"]
    strings = [t.decode("latin-1") for t in ranks]
    merges = all_split_merges(strings, {s: i for i, s in enumerate(strings)})
    assert merges == [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c"), ("c", "ab")]
    enc = tiktoken.Encoding("t", pat_str=r"\S+|\s+", mergeable_ranks={t: i for i, t in enumerate(ranks)}, special_tokens={})
    hf = bytelevel_bpe(ranks, r"\S+|\s+")
    for text in ["abc", "cabc", "abcab", "ccab abcabc bcab"]:
        assert hf.encode(text).ids == enc.encode_ordinary(text), text


@pytest.mark.parametrize(
    ("pattern", "reason", "lossy"),
    [
        (r"(?s)\S+|\s+", "Oniguruma", False),  # Python's regex takes it, HF's regex engine rejects it
        (r"\w+|[^\w\s]+", "other ids", True),  # leaves spaces unmatched: tiktoken drops them, HF keeps them
    ],
)
def test_no_export_when_hf_would_differ(
    pattern: str, reason: str, lossy: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = list(Corpus.builtin().iter_documents())[:5]
    tok = MicroTransformerTokenizer.train_from_iterator(docs, vocab_size=400, pattern=pattern, allow_lossy=lossy)
    with caplog.at_level(logging.WARNING):
        tok.save(tmp_path)
    assert "no Hugging Face tokenizer.json written" in caplog.text and reason in caplog.text
    assert not (tmp_path / "tokenizer.json").exists()
    assert MicroTransformerTokenizer.from_pretrained(tmp_path).encode("a b") == tok.encode("a b")


def test_sentencepiece_nfkc_not_exported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """HF's Precompiled normalizer and SentencePiece disagree on NFKC text such as CRLF: no export, and why."""
    docs = list(Corpus.builtin().iter_documents())[:10]
    tok = MicroTransformerTokenizer.train_from_iterator(docs, engine="sentencepiece", vocab_size=500, normalization="nfkc")
    with caplog.at_level(logging.WARNING):
        tok.save(tmp_path)
    assert "nfkc: Hugging Face's Precompiled normalizer" in caplog.text and not (tmp_path / "tokenizer.json").exists()
