"""nanochat compatibility: its presets give its ids, and its tokenizer calls work on ours.

nanochat's ``RustBPETokenizer`` is rebuilt here the way its ``train_from_iterator``
does it (rustbpe training, then a tiktoken ``Encoding`` with its special tokens
after the ranks), and the seed tutorial's nanochat snippets run verbatim with
only the ``from nanochat.tokenizer import ...`` lines replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import rustbpe
import tiktoken

from microtransformer import MicroTransformerTokenizer
from microtransformer.data.corpus import Corpus
from microtransformer.tokenization.special import NANOCHAT_SPLIT_PATTERN

# Verbatim from nanochat/tokenizer.py (its special tokens are read from the tutorial, which lists them).
NANOCHAT_SPLIT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "002_fe636e342bfffbd1.txt"


def _seed_text() -> str:
    if not SEED.is_file():
        pytest.skip(f"seed tutorial not found at {SEED}")
    return SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def nanochat_special_tokens() -> list[str]:
    """nanochat's SPECIAL_TOKENS list, as the tutorial prints it (an oracle independent of our constants)."""
    listing = re.search(r"SPECIAL_TOKENS = \[(.*?)\]", _seed_text(), re.S)
    assert listing, "the tutorial lists SPECIAL_TOKENS"
    return re.findall(r'"(<\|[a-z_]+\|>)"', listing.group(1))


def nanochat_rustbpe_encoding(texts: list[str], vocab_size: int, special_tokens: list[str]) -> tiktoken.Encoding:
    """What nanochat's ``RustBPETokenizer.train_from_iterator`` builds."""
    tokenizer = rustbpe.Tokenizer()
    tokenizer.train_from_iterator(iter(texts), vocab_size - len(special_tokens), pattern=NANOCHAT_SPLIT)
    mergeable_ranks = {bytes(k): v for k, v in tokenizer.get_mergeable_ranks()}
    offset = len(mergeable_ranks)
    return tiktoken.Encoding(
        name="rustbpe",
        pat_str=tokenizer.get_pattern(),
        mergeable_ranks=mergeable_ranks,
        special_tokens={name: offset + i for i, name in enumerate(special_tokens)},
    )


def test_presets_are_nanochats(nanochat_special_tokens: list[str]) -> None:
    assert NANOCHAT_SPLIT_PATTERN == NANOCHAT_SPLIT
    tok = MicroTransformerTokenizer.train_from_iterator(["x"], vocab_size=300, special_tokens="nanochat", pattern="nanochat")
    assert len(nanochat_special_tokens) == 9
    assert list(tok.special_tokens) == nanochat_special_tokens and tok.pattern == NANOCHAT_SPLIT
    assert tok.bos_id == tok.n_ordinary and tok.eos_id is None


def test_bpe_ids_equal_nanochat_rustbpe_tokenizer(
    shakespeare_200k: str, shared_data_dir: Path, nanochat_special_tokens: list[str]
) -> None:
    train = [shakespeare_200k[i : i + 10_000] for i in range(0, len(shakespeare_200k), 10_000)]
    enc = nanochat_rustbpe_encoding(train, 2048, nanochat_special_tokens)
    tok = MicroTransformerTokenizer.train_from_iterator(
        iter(train), vocab_size=2048, special_tokens="nanochat", pattern="nanochat", buffer_size=8
    )
    assert tok.get_vocab_size() == enc.n_vocab == 2048
    assert tok.get_special_tokens() == enc.special_tokens_set
    assert all(tok.encode_special(s) == enc.encode_single_token(s) for s in nanochat_special_tokens)
    held_out = (shared_data_dir / "moby_dick.txt").read_text(encoding="utf-8")[:100_000] + "12345 6789 x²"
    assert tok.encode(held_out) == enc.encode_ordinary(held_out)
    lines = held_out.splitlines()[:300]
    bos = enc.encode_single_token("<|bos|>")
    assert tok.encode(lines, prepend="<|bos|>", num_threads=8) == [[bos, *enc.encode_ordinary(t)] for t in lines]
    assert tok.encode("a", prepend=bos, append="<|assistant_end|>") == [bos, ord("a"), enc.encode_single_token("<|assistant_end|>")]
    ids = tok.encode(held_out[:2000], prepend="<|bos|>")
    assert tok.decode(ids) == enc.decode(ids)
    assert [tok.decode([i]) for i in ids[:50]] == [enc.decode([i]) for i in ids[:50]]
    # id_to_token: the same text, except that a partial UTF-8 character shows its bytes (\xNN), not U+FFFD
    assert [tok.id_to_token(i) for i in ids[:50] if "\ufffd" not in enc.decode([i])] == [
        enc.decode([i]) for i in ids[:50] if "\ufffd" not in enc.decode([i])
    ]
    # tiktoken_encoding carries the specials with our ids, like nanochat's Encoding
    assert tok.tiktoken_encoding.encode("<|bos|>hi", allowed_special="all") == enc.encode("<|bos|>hi", allowed_special="all")

    conversation = {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
    s = enc.encode_single_token
    assert tok.render_for_completion(conversation) == [
        bos, s("<|user_start|>"), *enc.encode_ordinary("What is 2+2?"), s("<|user_end|>"), s("<|assistant_start|>"),
    ]
    assert len(conversation["messages"]) == 2  # not modified


def _seed_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _seed_text(), re.S)


def test_seed_snippets_run_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, nanochat_special_tokens: list[str]
) -> None:
    """Every nanochat tokenizer snippet of the tutorial, as written, against our tokenizer.

    Left out: the rustbpe export step (rustbpe's own API) and the comparison with
    the ``RegexTokenizer`` of nanochat's test suite (a test helper, not an API;
    ``test_bpe_matches_reference`` is ours).
    """
    blocks = [b for b in _seed_blocks() if "encode" in b or "train_from_iterator" in b or "render_conversation" in b]
    blocks = [b for b in blocks if "tests.test_rustbpe" not in b]
    assert len(blocks) == 7
    monkeypatch.chdir(tmp_path)
    docs = list(Corpus.builtin().iter_documents())[:40]
    namespace: dict = {
        "text_iterator": iter(docs),
        "huge_dataset_generator": lambda: iter(docs),
        "huge_dataset": docs[:3],
        "texts": ["Hello", "world", "What is 2+2?"],
        "get_tokenizer": lambda: MicroTransformerTokenizer.from_pretrained("tokenizer/"),
        "conversation": {
            "messages": [
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": [{"type": "python", "text": "2+2"}, {"type": "python_output", "text": "4"}]},
            ]
        },
    }
    imports = {
        "from nanochat.tokenizer import RustBPETokenizer": "from microtransformer import MicroTransformerTokenizer as RustBPETokenizer",
        "from nanochat.tokenizer import get_tokenizer": "",
    }
    for block in blocks:
        if "*encode(" in block:  # the chat example names the ids it uses
            tok = namespace["tokenizer"]
            namespace.update(
                encode=tok.encode, bos=tok.get_bos_token_id(),
                **{name.strip("<|>"): tok.encode_special(name) for name in nanochat_special_tokens[1:]},
            )
        for old, new in imports.items():
            block = block.replace(old, new)
        exec(compile(block, "seed-snippet", "exec"), namespace)
        if "prepend=" in block:
            tok = namespace["tokenizer"]
            assert namespace["ids"][0] == tok.get_bos_token_id()
            assert namespace["text"] == "<|bos|>Hello world"
            assert namespace["ids_batch"] == [tok.encode("Hello"), tok.encode("world")]
    tok = namespace["tokenizer"]
    assert namespace["tokens"][0] == tok.bos_id and tok.decode(namespace["tokens"]).startswith("<|bos|><|user_start|>What")
    assert "Token " in capsys.readouterr().out
