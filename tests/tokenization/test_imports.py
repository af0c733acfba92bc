"""Other libraries' files load as our tokenizers with the original library's ids.

Each file is made here by that library (``SentencePieceTrainer``, a ``tokenizers``
BPE trained and saved), except the ``.tiktoken`` file (tiktoken's writer needs
blobfile; its line format is written directly and read back by tiktoken) and
minbpe's ``.model``, written from the layout of minbpe's ``Tokenizer.save``.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import pytest
import sentencepiece as spm
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from microtransformer.errors import ConfigError, TokenizerFormatError
from microtransformer.tokenization import GPT4_SPLIT_PATTERN, MicroTransformerTokenizer
from microtransformer.tokenization.reference_bpe import count_pieces, train_merges


@pytest.fixture(scope="module")
def corpus(shared_data_dir: Path) -> tuple[str, list[str]]:
    """Training text and held-out paragraphs from the shared corpora."""
    train = (shared_data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8")[:150_000]
    other = (shared_data_dir / "pride_and_prejudice.txt").read_text(encoding="utf-8")[:60_000]
    held = [p for p in other.split("\n\n") if p.strip()][:200] + ["naïve café 東京 🙂", "  x\t\ty \n\n"]
    return train, held


def test_tiktoken_file(corpus, tmp_path: Path) -> None:
    train, held = corpus
    ref = MicroTransformerTokenizer.train_from_iterator([train], vocab_size=1024, special_tokens=[])
    path = tmp_path / "mine.tiktoken"
    # tiktoken's dump_tiktoken_bpe needs blobfile; this is its format, line for line
    path.write_bytes(b"".join(base64.b64encode(ref.id_to_bytes(i)) + b" %d\n" % i for i in range(ref.n_ordinary)))
    ranks = load_tiktoken_bpe(str(path), expected_hash=hashlib.sha256(path.read_bytes()).hexdigest())
    enc = tiktoken.Encoding("mine", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 1024})
    tok = MicroTransformerTokenizer.from_pretrained(path, pattern="gpt4", special_tokens=["<|endoftext|>"])
    assert tok.engine_name == "bpe" and tok.vocab_size == enc.n_vocab
    assert tok.encode_batch(held) == enc.encode_ordinary_batch(held)
    assert tok.special_tokens == {"<|endoftext|>": 1024} and tok.eos_id == 1024  # a well-known role
    assert tok.tiktoken_encoding.encode("a<|endoftext|>", allowed_special="all") == enc.encode("a<|endoftext|>", allowed_special="all")
    with pytest.raises(ConfigError, match="no split pattern"):
        MicroTransformerTokenizer.from_pretrained(path)
    path.write_bytes(b"not base64 at all\n")
    with pytest.raises(TokenizerFormatError, match="line 1 is damaged"):
        MicroTransformerTokenizer.from_pretrained(path, pattern="gpt4")


def _train_sp(text: str, **overrides) -> bytes:
    kwargs = dict(
        model_type="bpe", vocab_size=800, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2,
    )
    kwargs.update(overrides)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=model, **kwargs)
    return model.getvalue()


def test_sentencepiece_model(corpus, tmp_path: Path) -> None:
    train, held = corpus
    path = tmp_path / "sp.model"
    path.write_bytes(_train_sp(train))
    sp = spm.SentencePieceProcessor(model_file=str(path))
    tok = MicroTransformerTokenizer.from_pretrained(path, special_tokens=["<|bos|>", "<|eos|>"])
    assert tok.engine_name == "sentencepiece" and tok.n_ordinary == sp.get_piece_size()
    assert tok.encode_batch(held) == sp.encode(held)
    assert tok.bos_id == sp.get_piece_size() and [tok.decode(tok.encode(t)) for t in held] == held
    # saved with our specials in the .model; that file imports back with them
    tok.save(tmp_path / "saved")
    again = MicroTransformerTokenizer.from_pretrained(tmp_path / "saved" / "sentencepiece.model")
    assert again.special_tokens == tok.special_tokens and again.bos_id == tok.bos_id and again.eos_id == tok.eos_id
    assert again.encode_batch(held) == sp.encode(held)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(model_type="unigram"), "model_type unigram"),
        (dict(add_dummy_prefix=True), "add_dummy_prefix"),
        (dict(byte_fallback=False), "byte_fallback"),
        (dict(user_defined_symbols=["<sep>"]), "user-defined"),
    ],
)
def test_sentencepiece_unsupported_settings_named(corpus, tmp_path: Path, overrides: dict, message: str) -> None:
    path = tmp_path / "sp.model"
    path.write_bytes(_train_sp(corpus[0][:40_000], vocab_size=400, **overrides))
    with pytest.raises(TokenizerFormatError, match=message):
        MicroTransformerTokenizer.from_pretrained(path)


def _write_minbpe_model(path: Path, pattern: str, specials: dict[str, int], merges: list[tuple[int, int]]) -> None:
    """minbpe's ``Tokenizer.save`` layout: version, pattern, special count, ``token id`` lines, ``id1 id2`` merges."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("minbpe v1\n")
        f.write(f"{pattern}\n")
        f.write(f"{len(specials)}\n")
        for special, idx in specials.items():
            f.write(f"{special} {idx}\n")
        for idx1, idx2 in merges:
            f.write(f"{idx1} {idx2}\n")


def _minbpe_encode(text: str, merges: list[tuple[int, int]], pattern: str | None) -> list[int]:
    """minbpe's ``RegexTokenizer.encode_ordinary`` (``BasicTokenizer.encode`` without a pattern), as written there."""
    import regex

    ranks = {pair: 256 + i for i, pair in enumerate(merges)}
    out: list[int] = []
    for chunk in regex.findall(pattern, text) if pattern else [text]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            stats = {}
            for pair in zip(ids, ids[1:]):
                stats[pair] = stats.get(pair, 0) + 1
            pair = min(stats, key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break
            new, i = [], 0
            while i < len(ids):
                if i < len(ids) - 1 and (ids[i], ids[i + 1]) == pair:
                    new.append(ranks[pair])
                    i += 2
                else:
                    new.append(ids[i])
                    i += 1
            ids = new
        out.extend(ids)
    return out


@pytest.mark.parametrize("pattern", [GPT4_SPLIT_PATTERN, ""])
def test_minbpe_model(corpus, tmp_path: Path, pattern: str) -> None:
    train, held = corpus
    # no pattern: the whole text is one chunk, which minbpe's quadratic merge loop makes slow; keep it short
    size = 30_000 if pattern else 5_000
    merges = train_merges(count_pieces([train[:size]], pattern or r"[\s\S]+"), 256 + 200, tie_break="first")
    path = tmp_path / "tok.model"
    _write_minbpe_model(path, pattern, {"<|endoftext|>": 256 + len(merges)}, merges)
    tok = MicroTransformerTokenizer.from_pretrained(path)
    assert tok.engine_name == "reference" and tok.special_tokens == {"<|endoftext|>": 456}
    sample = held[:40] if pattern else [t[:300] for t in held[:20]]
    assert [tok.encode(t) for t in sample] == [_minbpe_encode(t, merges, pattern) for t in sample]

    _write_minbpe_model(path, pattern, {"<|endoftext|>": 100257}, merges)  # GPT-4's id: not after the merges
    with pytest.raises(TokenizerFormatError, match="do not follow the 200 merges"):
        MicroTransformerTokenizer.from_pretrained(path)


def test_hf_tokenizer_json(corpus, tmp_path: Path) -> None:
    train, held = corpus
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(
        [train], trainers.BpeTrainer(vocab_size=900, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    )
    assert tk.token_to_id("<|endoftext|>") == 0  # HF puts trainer specials first: not our layout
    with pytest.raises(TokenizerFormatError, match="special tokens right after"):
        MicroTransformerTokenizer.from_pretrained(_save(tk, tmp_path / "first.json"))

    tk = Tokenizer(models.BPE())  # GPT-2 layout: the special token is the last vocabulary entry
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([train], trainers.BpeTrainer(vocab_size=900, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tk.add_special_tokens(["<|endoftext|>"])
    tok = MicroTransformerTokenizer.from_pretrained(_save(tk, tmp_path / "gpt2.json"))
    assert tok.vocab_size == tk.get_vocab_size() and tok.special_tokens == {"<|endoftext|>": tk.get_vocab_size() - 1}
    assert tok.encode_batch(held) == [e.ids for e in tk.encode_batch(held, add_special_tokens=False)]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")), "model type 'WordPiece'"),
        (lambda: Tokenizer(models.Unigram([("a", -1.0), ("b", -2.0)], 0, byte_fallback=False)), "model type 'Unigram'"),
        (lambda: _with(Tokenizer(models.BPE({"a": 0}, [], byte_fallback=True)), pre_tokenizer=pre_tokenizers.Metaspace()), "pre-tokenizer Metaspace"),
        (lambda: _with(Tokenizer(models.BPE({"a": 0}, [])), pre_tokenizer=pre_tokenizers.ByteLevel(), normalizer=normalizers.NFKC()), "normalizer NFKC"),
    ],
)
def test_hf_unsupported_named(tmp_path: Path, build, message: str) -> None:
    with pytest.raises(TokenizerFormatError, match=message):
        MicroTransformerTokenizer.from_pretrained(_save(build(), tmp_path / "tokenizer.json"))


def test_unknown_or_damaged_files(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    with pytest.raises(TokenizerFormatError, match="not a tokenizer file"):
        MicroTransformerTokenizer.from_pretrained(tmp_path / "x.bin")
    (tmp_path / "x.model").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(TokenizerFormatError, match="x.model"):
        MicroTransformerTokenizer.from_pretrained(tmp_path / "x.model")
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}')
    with pytest.raises(TokenizerFormatError, match="tokenizer.json"):
        MicroTransformerTokenizer.from_pretrained(tmp_path / "tokenizer.json")


def _with(tk: Tokenizer, **parts) -> Tokenizer:
    for name, value in parts.items():
        setattr(tk, name, value)
    return tk


def _save(tk: Tokenizer, path: Path) -> Path:
    tk.save(str(path))
    return path
