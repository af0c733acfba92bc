"""The reference BPE against rustbpe/tiktoken, a naive trainer, and by hand.

Three independent oracles pin the fast incremental trainer down:
rustbpe (the engine it stands for), a deliberately naive recount-everything
trainer written below, and merges worked out by hand in comments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import rustbpe
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from microtransformer.errors import ConfigError
from microtransformer.tokenization.reference_bpe import (
    ReferenceBPE,
    count_pieces,
    merge_pair,
    train_merges,
)
from microtransformer.tokenization.special import GPT4_SPLIT_PATTERN

Pair = tuple[int, int]


# --------------------------------------------------------------------------
# helpers: the naive trainer and minbpe's merge recovery from tiktoken ranks
# --------------------------------------------------------------------------


def naive_train(chunk_counts: Mapping[str, int], vocab_size: int, tie_break: str) -> list[Pair]:
    """Recount every pair from scratch each step (minbpe's loop, on unique chunks)."""
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    weights = list(chunk_counts.values())
    merges: list[Pair] = []
    for i in range(vocab_size - 256):
        stats: dict[Pair, int] = {}
        for word, weight in zip(words, weights):
            for pair in zip(word, word[1:]):
                stats[pair] = stats.get(pair, 0) + weight
        if not stats:
            break
        if tie_break == "first":
            best = max(stats, key=stats.get)  # type: ignore[arg-type]  # first max in dict order
        else:
            best = min(stats, key=lambda p: (-stats[p], p))
        words = [merge_pair(word, best, 256 + i) for word in words]
        merges.append(best)
    return merges


def _bpe_parts(ranks: Mapping[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Byte-level BPE of ``token`` using only ranks below ``max_rank`` (minbpe's ``bpe``)."""
    parts = [bytes([b]) for b in token]
    while True:
        best_i, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_i, best_rank = i, rank
        if best_i < 0:
            return parts
        parts = parts[:best_i] + [parts[best_i] + parts[best_i + 1]] + parts[best_i + 2 :]


def recover_merges(ranks: Mapping[bytes, int]) -> list[Pair]:
    """The merge list behind tiktoken-style ranks (minbpe's ``recover_merges``)."""
    merges: list[Pair] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if rank < 256:
            assert len(token) == 1 and token[0] == rank, "ids 0..255 must be the raw bytes"
            continue
        parts = _bpe_parts(ranks, token, max_rank=rank)
        assert len(parts) == 2, f"token {token!r} (rank {rank}) does not split into two earlier tokens: {parts}"
        left, right = ranks[parts[0]], ranks[parts[1]]
        assert left < rank and right < rank
        assert rank == 256 + len(merges), "ranks must be contiguous"
        merges.append((left, right))
    return merges


# --------------------------------------------------------------------------
# 1. acceptance: identical to rustbpe merges and to tiktoken ids
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rustbpe_ranks(shakespeare_200k: str) -> dict[bytes, int]:
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator([shakespeare_200k], 1024, pattern=GPT4_SPLIT_PATTERN)
    return {bytes(b): r for b, r in tok.get_mergeable_ranks()}


@pytest.fixture(scope="module")
def reference_merges(shakespeare_200k: str) -> list[Pair]:
    return train_merges(count_pieces([shakespeare_200k]), 1024, tie_break="lowest")


def test_merges_identical_to_rustbpe(rustbpe_ranks: dict[bytes, int], reference_merges: list[Pair]) -> None:
    assert len(rustbpe_ranks) == 1024
    rust_merges = recover_merges(rustbpe_ranks)
    assert len(reference_merges) == 768
    first_diff = next((i for i, (a, b) in enumerate(zip(rust_merges, reference_merges)) if a != b), None)
    assert first_diff is None, (
        f"merge {first_diff}: rustbpe {rust_merges[first_diff]} != ours {reference_merges[first_diff]}"
    )
    assert rust_merges == reference_merges
    # and the token bytes agree id for id
    bpe = ReferenceBPE(reference_merges)
    assert {tok: i for i, tok in enumerate(bpe.vocab)} == rustbpe_ranks


def _moby_50k(shared_data_dir: Path) -> str:
    # read_bytes keeps the BOM and the CRLF line ends that read_text would translate
    return (shared_data_dir / "moby_dick.txt").read_bytes().decode("utf-8")[:50_000]


def test_ids_identical_to_tiktoken(
    rustbpe_ranks: dict[bytes, int],
    reference_merges: list[Pair],
    shakespeare_200k: str,
    shared_data_dir: Path,
) -> None:
    enc = tiktoken.Encoding(
        name="reference-bpe-test", pat_str=GPT4_SPLIT_PATTERN, mergeable_ranks=rustbpe_ranks, special_tokens={}
    )
    bpe = ReferenceBPE(reference_merges)
    moby = _moby_50k(shared_data_dir)
    assert moby.startswith("\ufeff") and "\r\n" in moby, "expected the BOM/CRLF edge cases in the sample"
    for text in (shakespeare_200k, moby, "héllo wörld 🤗 日本語\r\n\r\n  x\x00y"):
        ours = bpe.encode_ordinary(text)
        theirs = enc.encode_ordinary(text)
        first_diff = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        assert ours == theirs, f"first difference at token {first_diff}"
        assert bpe.decode_bytes(ours) == text.encode("utf-8")


def test_pair_rank_differs_from_tiktoken_only_for_untrainable_merges() -> None:
    # Why the oracle encodes by pair rank and still matches tiktoken: tiktoken merges *any*
    # two adjacent parts whose concatenation is a token. With merges bc, ab, (ab)c it turns
    # a|bc into "abc", which pair-rank BPE never does because (a, bc) is not a merge. Training
    # cannot produce this list (once bc is merged, "ab" is never followed by "c"), which is why
    # the two agree on every trained vocabulary above.
    merges = [(98, 99), (97, 98), (257, 99)]  # bc=256, ab=257, abc=258
    bpe = ReferenceBPE(merges)
    enc = tiktoken.Encoding(
        name="untrainable",
        pat_str=GPT4_SPLIT_PATTERN,
        mergeable_ranks={tok: i for i, tok in enumerate(bpe.vocab)},
        special_tokens={},
    )
    assert bpe.encode_ordinary("abc") == [97, 256]
    assert enc.encode_ordinary("abc") == [258]


# --------------------------------------------------------------------------
# 2. the incremental trainer equals the naive one
# --------------------------------------------------------------------------

HAND_TEXTS = [
    ["aaaaa"],
    ["aaa", "aaaa", "aaaaaaa"],
    ["abababa", "ba ba ab"],
    ["hello hello world", "help held hell"],
    ["naïve café, 日本語のテキスト 🤗🤗 é e\u0301"],
    ["line one\r\nline two\r\n\r\n\tindented   spaces\n"],
    ["x\x00y\x00\x00z", "1234567 12 123"],
    ["the cat sat on the mat; the bat ate the rat's hat"],
]


@pytest.mark.parametrize("tie_break", ["lowest", "first"])
@pytest.mark.parametrize("texts", HAND_TEXTS, ids=lambda t: repr(t[0][:12]))
def test_train_matches_naive_trainer(texts: list[str], tie_break: str) -> None:
    counts = count_pieces(texts)
    vocab_size = 256 + 40  # more than some texts can fill: early stop must agree too
    assert train_merges(counts, vocab_size, tie_break=tie_break) == naive_train(counts, vocab_size, tie_break)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab ab\nc\u00e9", max_size=30), min_size=1, max_size=5),
    tie_break=st.sampled_from(["lowest", "first"]),
)
def test_train_matches_naive_trainer_random(texts: list[str], tie_break: str) -> None:
    counts = count_pieces(texts)
    assert train_merges(counts, 256 + 30, tie_break=tie_break) == naive_train(counts, 256 + 30, tie_break)


def test_first_tie_break_matches_naive_on_real_text(shakespeare_200k: str) -> None:
    counts = count_pieces([shakespeare_200k[:20_000]])
    assert train_merges(counts, 256 + 200, tie_break="first") == naive_train(counts, 256 + 200, "first")


# --------------------------------------------------------------------------
# 3. golden merges, checked by hand
# --------------------------------------------------------------------------


def test_golden_merges_lowest() -> None:
    # Chunks: "hello", " hello", " world" (once each). Pair counts:
    #   (h,e)=(104,101):2  (e,l)=(101,108):2  (l,l)=(108,108):2  (l,o)=(108,111):2, all others 1.
    # Lowest tuple among the count-2 pairs is (101,108) "el" -> 256.
    # Now h,256,l,o twice: (104,256),(256,108),(108,111) all 2 -> (104,256) "hel" -> 257.
    # Then (257,108) vs (108,111), both 2 -> (108,111) "lo" -> 258 (lower tuple).
    # Then h-e-l-l-o = (257,258) count 2 -> 259 "hello".
    # All remaining pairs have count 1: (32,259),(32,119),(119,111),... -> lowest (32,119) " w" -> 260.
    merges = train_merges(count_pieces(["hello hello world"]), 261)
    assert merges == [(101, 108), (104, 256), (108, 111), (257, 258), (32, 119)]
    assert ReferenceBPE(merges).vocab[256:] == [b"el", b"hel", b"lo", b"hello", b" w"]


def test_golden_merges_first() -> None:
    # Same counts; minbpe scans "hello" first, so among the count-2 pairs (h,e) is met first -> "he".
    # Then 256,l,l,o: (256,108) met first -> "hel"; then (257,108) "hell"; then (258,111) "hello".
    # Count-1 pairs: scanning " hello" = [32, 259] gives (32,259) first -> " hello".
    merges = train_merges(count_pieces(["hello hello world"]), 261, tie_break="first")
    assert merges == [(104, 101), (256, 108), (257, 108), (258, 111), (32, 259)]
    assert ReferenceBPE(merges).vocab[256:] == [b"he", b"hel", b"hell", b"hello", b" hello"]


def test_overlapping_runs_are_merged_left_to_right() -> None:
    # "aaaaa" has 4 overlapping (a,a) pairs; merging gives X X a (X=256), leaving (X,X):1 and
    # (X,a):1. The lower tuple (256,97) wins -> Y=257: [X, Y]; last merge (256,257); then nothing.
    merges = train_merges({"aaaaa": 1}, 256 + 10)
    assert merges == [(97, 97), (256, 97), (256, 257)]
    assert merges == naive_train({"aaaaa": 1}, 256 + 10, "lowest")
    assert merge_pair([97, 97, 97], (97, 97), 256) == [256, 97]
    assert merge_pair([97, 97, 97, 97], (97, 97), 256) == [256, 256]


def test_count_chunks_keeps_documents_apart_and_first_order() -> None:
    counts = count_pieces(["b a", "a", "b"])
    assert list(counts) == ["b", " a", "a"]
    assert counts == {"b": 2, " a": 1, "a": 1}
    # joining would have produced a single chunk "ab"
    assert "ab" not in count_pieces(["a", "b"])


# --------------------------------------------------------------------------
# 4. round trip on arbitrary text
# --------------------------------------------------------------------------

_ROUNDTRIP_CORPUS = "hello world, héllo wörld! 日本語 日本 🤗🤗 e\u0301e\u0301 \r\n\r\n  \t 123456 x\x00y"
_ROUNDTRIP_BPE = ReferenceBPE(train_merges(count_pieces([_ROUNDTRIP_CORPUS]), 256 + 60))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.sampled_from(list("he lowrd\r\n\t\x00日本語🤗é\u0301\u200d0123"))),
    )
)
def test_decode_encode_roundtrip(text: str) -> None:
    assert _ROUNDTRIP_BPE.decode_bytes(_ROUNDTRIP_BPE.encode_ordinary(text)) == text.encode("utf-8")


def test_encode_cache_is_bounded_and_transparent() -> None:
    bpe = ReferenceBPE(_ROUNDTRIP_BPE.merges, cache_size=2)
    text = "one two three four one two"
    assert bpe.encode_ordinary(text) == _ROUNDTRIP_BPE.encode_ordinary(text)
    assert len(bpe._cache) <= 2


# --------------------------------------------------------------------------
# 5. early stop and input errors
# --------------------------------------------------------------------------


def test_early_stop_returns_fewer_merges() -> None:
    # "abc" holds at most 2 merges (ab, then ab+c); asking for 1000 is not an error
    merges = train_merges(count_pieces(["abc"]), 256 + 1000)
    assert merges == [(97, 98), (256, 99)]
    assert train_merges({}, 300) == []
    assert train_merges(count_pieces(["hi"]), 256) == []


@pytest.mark.parametrize("vocab_size", [0, 255, -1])
def test_vocab_size_below_256_raises(vocab_size: int) -> None:
    with pytest.raises(ConfigError, match="256"):
        train_merges({"ab": 1}, vocab_size)


def test_bad_tie_break_and_bad_ids_raise() -> None:
    with pytest.raises(ConfigError, match="tie_break"):
        train_merges({"ab": 1}, 300, tie_break="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="count_pieces"):
        train_merges({"ab": -1}, 300)
    with pytest.raises(ConfigError, match="training order"):
        ReferenceBPE([(97, 300)])
    with pytest.raises(ConfigError, match="cannot decode"):
        ReferenceBPE([]).decode_bytes([97, 256])
    with pytest.raises(ConfigError, match="cannot decode"):
        ReferenceBPE([]).decode_bytes([-1])


def test_progress_bar_does_not_change_result() -> None:
    counts = count_pieces(["hello hello world"])
    assert train_merges(counts, 261, progress=True) == train_merges(counts, 261)
