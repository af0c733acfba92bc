"""The ``autoencoder`` engine: verified vocabulary, cache == network, and the shared engine contract."""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

from microtransformer.autoencoder.model import AutoEncoderConfig, ChunkAutoEncoder
from microtransformer.errors import TokenizerFormatError, TokenizerNotFoundError
from microtransformer.tokenization import MicroTransformerTokenizer
from microtransformer.autoencoder.tokenizer import N_BYTES, WEIGHTS_FILE, AutoEncoderTokenizer
from microtransformer.tokenization.base import _JOIN_BLOCK, CONFIG_FILE, LazyFile
from microtransformer.autoencoder.vocab import build_vocabulary, greedy_split
from microtransformer.autoencoder.chunking import count_chunks, iter_chunks

from autoencoder_testkit import train_tiny_autoencoder

# Reuse the one contract every engine passes (tests/tokenization/test_contract.py).
sys.path.insert(0, str(Path(__file__).parents[1] / "tokenization"))
contract = importlib.import_module("test_contract")

WORDS = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "hot word but what some we can out other were all there when up use your how said an each she which do "
    "their time if will way about many then them write would like so these her long make thing see him two"
).split()
DOCS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40)) + ".\n" for i in range(60)]
VOCAB = 256 + 60 + 12  # bytes + codes + default special tokens


def _train_model() -> ChunkAutoEncoder:
    torch.set_num_threads(1)
    counts = count_chunks(DOCS)
    return train_tiny_autoencoder(sorted(counts, key=lambda c: (-counts[c], c)), steps=400)


@pytest.fixture(scope="module")
def model() -> ChunkAutoEncoder:
    return _train_model()


@pytest.fixture(scope="module")
def tok(model: ChunkAutoEncoder) -> MicroTransformerTokenizer:
    return MicroTransformerTokenizer.train_from_iterator(DOCS, engine="autoencoder", vocab_size=VOCAB, model=model)


# --- the shared contract (its vocab-accounting test is restated below for this vocab size)
test_roundtrip_property = contract.test_roundtrip_property
test_roundtrip_tricky = contract.test_roundtrip_tricky
test_save_load_identical = contract.test_save_load_identical
test_pickle = contract.test_pickle
test_special_injection_refused_by_default = contract.test_special_injection_refused_by_default
test_batch_equals_single = contract.test_batch_equals_single
test_padding_truncation_masks = contract.test_padding_truncation_masks
test_token_lookup = contract.test_token_lookup
test_chat_rendering_mask = contract.test_chat_rendering_mask


def test_vocab_accounting(tok: AutoEncoderTokenizer) -> None:
    assert isinstance(tok, AutoEncoderTokenizer)
    assert tok.vocab_size == VOCAB == tok.n_ordinary + len(tok.special_tokens)
    sizes = tok.token_bytes()
    text = contract.TRICKY[5] + contract.TRICKY[11] + DOCS[0]
    ids = tok.encode(text)
    assert int(sizes[ids].sum()) == len(text.encode("utf-8"))


def test_vocabulary_is_verified_one_chunk_per_code(tok: AutoEncoderTokenizer, model: ChunkAutoEncoder) -> None:
    assert len(tok.codes) == 60 == len(set(tok.codes))
    assert all(len(c) >= 2 for c in tok.chunks)
    decoded, codes = model.reconstruct(tok.chunks)
    assert decoded == tok.chunks and codes.tolist() == tok.codes
    assert tok.verify() == []  # the table equals the decoder's output for every code
    # most used first when the training chunks are encoded (the compression strategy's order)
    counts = count_chunks(DOCS)
    table = set(tok.chunks)
    usage = Counter(p for c, n in counts.items() for p in greedy_split(c, table) * n if len(p) > 1)
    uses = [usage[c] for c in tok.chunks]
    assert uses == sorted(uses, reverse=True) and uses[-1] > 0


def test_cached_path_equals_network_path(tok: AutoEncoderTokenizer) -> None:
    texts = [DOCS[3], "the word said, there were many things to write: hotter 123 ünïcode 🙂", "", "xyz the qq"]
    for t in texts:
        ids = tok.encode(t)
        assert tok.encode_with_network(t) == ids
        assert tok.decode_with_network(ids) == t.encode("utf-8") == tok.decode_bytes(ids)
    # frequent words are single code tokens
    ids = tok.encode(" the")
    assert len(ids) == 1 and ids[0] >= N_BYTES and tok.code_of(ids[0]) is not None
    assert tok.code_of(65) is None


def test_fallback_greedy_longest_match(tok: AutoEncoderTokenizer) -> None:
    # " thethe" is not a chunk of the corpus: longest vocabulary prefix " the", then "th"... or bytes
    ids = tok.encode(" thethe")
    assert tok.decode(ids) == " thethe"
    assert ids[0] == tok.token_to_id(b" the")
    assert tok.encode_chunk(b"zq") == [ord("z"), ord("q")]


def test_loaded_tokenizer_keeps_network(tok: AutoEncoderTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, AutoEncoderTokenizer)
    assert loaded._model is None  # torch model is built lazily
    assert loaded.verify() == []
    assert loaded.encode_with_network(DOCS[1]) == tok.encode(DOCS[1])



def test_large_grid_codes_save_load_and_decode(tmp_path: Path) -> None:
    """The default config's 2**60-code grid: indices above int32 (and float64's exact range) survive vocab.json."""
    torch.set_num_threads(1)
    counts = count_chunks(DOCS)
    config = dataclasses.replace(AutoEncoderConfig.preset("tiny"), levels=(8,) * 20)
    big = train_tiny_autoencoder(sorted(counts, key=lambda c: (-counts[c], c)), steps=300, config=config)
    tok = MicroTransformerTokenizer.train_from_iterator(DOCS, engine="autoencoder", vocab_size=VOCAB, model=big)
    assert max(tok.codes) > 2**53 and len(set(tok.codes)) == len(tok.codes) > 0
    tok.save(tmp_path)
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert loaded.codes == tok.codes and loaded.verify() == []
    assert loaded.encode_with_network(DOCS[2]) == tok.encode(DOCS[2])
    assert loaded.decode(tok.encode(DOCS[2] + " zq 🙂")) == DOCS[2] + " zq 🙂"


# --- the weights are a lazy file: loading and encode/decode never read them
def _count_weight_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every full read of a weights file (Path.read_bytes, which LazyFile.read uses)."""
    reads: list[str] = []
    read_bytes = Path.read_bytes

    def recording(self: Path) -> bytes:
        if self.name == WEIGHTS_FILE:
            reads.append(str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", recording)
    return reads


def test_weights_read_only_when_the_network_is_used(
    tok: AutoEncoderTokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok.save(tmp_path)
    reads = _count_weight_reads(monkeypatch)
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, AutoEncoderTokenizer)
    assert isinstance(loaded._weights, LazyFile) and loaded._weights.path == tmp_path / WEIGHTS_FILE
    text = DOCS[2] + "the word said, hotter ünïcode 🙂 xyz"
    ids = loaded.encode(text)
    assert loaded.decode(ids) == text and loaded.fingerprint == tok.fingerprint
    assert reads == [] and loaded._model is None
    assert loaded.encode_with_network(text) == ids == tok.encode(text)
    assert reads == [str(tmp_path / WEIGHTS_FILE)]  # read once, verified, and not kept as bytes
    assert isinstance(loaded._weights, LazyFile)
    # a pickle (DataLoader workers) keeps the weights lazy too
    clone = pickle.loads(pickle.dumps(loaded))
    assert isinstance(clone._weights, LazyFile) and clone.fingerprint == tok.fingerprint
    assert clone.encode(text) == ids and len(reads) == 1
    assert clone.decode_with_network(ids) == text.encode("utf-8")


def test_weights_damaged_after_loading(tok: AutoEncoderTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    loaded = MicroTransformerTokenizer.from_pretrained(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert loaded.decode(loaded.encode(DOCS[0])) == DOCS[0]  # the table needs no weights
    with pytest.raises(TokenizerFormatError, match=f"{WEIGHTS_FILE} is damaged"):
        loaded.encode_with_network(DOCS[0])
    with pytest.raises(TokenizerFormatError, match=f"{WEIGHTS_FILE} is damaged"):
        loaded.save(tmp_path / "copy")
    with pytest.raises(TokenizerFormatError, match=f"{WEIGHTS_FILE} is damaged"):  # the streamed check at load
        MicroTransformerTokenizer.from_pretrained(tmp_path)
    weights.unlink()
    with pytest.raises(TokenizerNotFoundError, match=f"{WEIGHTS_FILE} is missing"):
        loaded.verify()
    with pytest.raises(TokenizerNotFoundError, match=f"{WEIGHTS_FILE} is missing"):
        MicroTransformerTokenizer.from_pretrained(tmp_path)


def test_save_load_save_identical_files(tok: AutoEncoderTokenizer, tmp_path: Path) -> None:
    first, second = tok.save(tmp_path / "a"), tmp_path / "b"
    loaded = MicroTransformerTokenizer.from_pretrained(first)
    loaded.save(second)
    assert isinstance(loaded._weights, LazyFile)  # save read the file, it did not keep it
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and WEIGHTS_FILE in names and CONFIG_FILE in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    again = MicroTransformerTokenizer.from_pretrained(second)
    assert tok.fingerprint == loaded.fingerprint == again.fingerprint
    assert again.verify() == []



def test_long_decode_joins_in_blocks(tok: AutoEncoderTokenizer) -> None:
    text = "".join(DOCS) * 6 + "ünïcode 🙂"
    ids = tok.encode(text)
    assert len(ids) > 2 * _JOIN_BLOCK
    assert tok.decode_bytes(ids) == b"".join(tok.id_to_bytes(i) for i in ids) == text.encode("utf-8")
    with_special = ids[:_JOIN_BLOCK + 5] + [tok.bos_id] + ids[_JOIN_BLOCK + 5 :]
    assert tok.decode(with_special, skip_special_tokens=True) == text


def test_build_vocabulary_report(model: ChunkAutoEncoder) -> None:
    counts = Counter(count_chunks(DOCS))
    counts[b" zzzzqqq"] = 1000  # frequent but never trained: must be rejected, not guessed
    codes, chunks, report = build_vocabulary(model, counts, 500)
    assert b" zzzzqqq" not in chunks
    assert report.rejected_mismatch >= 1 and report.accepted == len(codes) == len(chunks)
    assert 0.0 < report.occurrence_coverage <= 1.0


def test_pieces_fill_a_vocabulary_the_chunks_cannot(model: ChunkAutoEncoder) -> None:
    # " the" is no chunk here, only a prefix of an untrained word: it can enter only as a piece
    counts = Counter(count_chunks(DOCS))
    del counts[b" the"]
    counts[b" thezzq"] = 500
    n_codes = len(counts) + 20  # more codes than whole chunks
    codes, chunks, report = build_vocabulary(model, counts, n_codes, strategy="frequency")
    assert report.pieces_accepted >= 1 and report.pieces_tried >= report.pieces_accepted
    assert b" the" in chunks[len(chunks) - report.pieces_accepted :]
    assert b" thezzq" not in chunks
    decoded, got = model.reconstruct(chunks)  # pieces are verified like whole chunks
    assert decoded == chunks and got.tolist() == codes and len(set(codes)) == len(codes)
    _, no_pieces, r0 = build_vocabulary(model, counts, n_codes, strategy="frequency", pieces=False)
    assert r0.pieces_tried == 0 and b" the" not in no_pieces and len(no_pieces) == len(chunks) - report.pieces_accepted
    # the fallback uses the piece: " thezzq" -> " the" + bytes, and round-trips
    tok = AutoEncoderTokenizer.from_model(model, counts, n_codes=n_codes, strategy="frequency")
    ids = tok.encode(" thezzq")
    assert ids[0] == tok.token_to_id(b" the") and len(ids) == 4
    assert tok.decode(ids) == " thezzq" and tok.encode_with_network(" thezzq") == ids


def test_piece_fraction_keeps_codes_for_pieces(model: ChunkAutoEncoder) -> None:
    counts = Counter(count_chunks(DOCS))
    del counts[b" the"]
    counts[b" thezzq"] = 500
    # 30 codes, 6 kept for pieces: whole chunks alone could fill all 30, yet " the" gets in as a piece
    codes, chunks, report = build_vocabulary(model, counts, 30, strategy="frequency", piece_fraction=0.2)
    assert len(codes) == 30 and b" the" in chunks and 1 <= report.pieces_accepted <= 6
    whole = [c for c in chunks if c in counts]
    assert whole[:24] == build_vocabulary(model, counts, 24, strategy="frequency")[1]  # the first 24 are the plain top-24
    decoded, got = model.reconstruct(chunks)
    assert decoded == chunks and got.tolist() == codes
    assert b" the" not in build_vocabulary(model, counts, 30, strategy="frequency")[1]  # piece_fraction 0: whole chunks fill it
    with pytest.raises(Exception, match="piece_fraction"):
        build_vocabulary(model, counts, 30, strategy="frequency", piece_fraction=1.5)


def test_in_engine_training_without_checkpoint() -> None:
    torch.set_num_threads(1)
    tok = MicroTransformerTokenizer.train_from_iterator(
        DOCS, engine="autoencoder", vocab_size=300, steps=30, pretrain_options={"batch_size": 32, "log_every": 10}
    )
    assert tok.decode(tok.encode(DOCS[0])) == DOCS[0]
    with pytest.raises(Exception, match="unknown options"):
        MicroTransformerTokenizer.train_from_iterator(DOCS, engine="autoencoder", vocab_size=300, bogus=1)


@given(text=contract.TEXTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fast_encode_equals_chunk_by_chunk_reference(tok: AutoEncoderTokenizer, text: str) -> None:
    """The findall fast path == iter_chunks + encode_chunk, the slow reference."""
    reference = [i for chunk in iter_chunks(text) for i in tok.encode_chunk(chunk)]
    assert tok.encode_ordinary(text) == reference
