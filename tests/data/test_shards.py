"""Token shards (mtx data prepare) and the memmap / in-memory batch loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from microtransformer.data.corpus import Corpus
from microtransformer.data.loader import BPEDataset, ShardDataset
from microtransformer.data.prepare import prepare_shards, split_long_document
from microtransformer.data.shards import TokenStream, dtype_for_vocab, read_meta
from microtransformer.errors import DataError


@pytest.fixture(scope="module")
def tok():
    from pydoc_data.topics import topics

    from microtransformer.tokenization import MicroTransformerTokenizer

    return MicroTransformerTokenizer.train_from_iterator(list(topics.values())[:30], engine="bpe", vocab_size=600)


@pytest.fixture
def corpus_dir(tmp_path):
    from pydoc_data.topics import topics

    d = tmp_path / "docs"
    d.mkdir()
    for i, name in enumerate(sorted(topics)[:40]):
        (d / f"{i:03d}.txt").write_text(topics[name] + " café ☕\n", encoding="utf-8")
    return d


def _ids(shards, split: str) -> np.ndarray:
    return TokenStream.open(shards, split)[:]


def _split_docs(ids: np.ndarray, sep: int) -> list[list[int]]:
    starts = list(np.flatnonzero(ids == sep)) + [len(ids)]
    return [ids[a + 1 : b].tolist() for a, b in zip(starts, starts[1:])]


def test_prepare_splits_by_document_with_bos_and_byte_counts(tmp_path, corpus_dir, tok):
    corpus = Corpus.from_dir(corpus_dir)
    meta = prepare_shards(corpus, tok, tmp_path / "shards", val_fraction=0.2, show_progress=False)
    assert meta.dtype == "uint16" and meta.separator_id == tok.bos_id
    docs = [tok.encode(t) for t in corpus.iter_documents()]
    got = []
    for split in ("train", "val"):
        ids = _ids(tmp_path / "shards", split)
        assert len(ids) == meta.splits[split].tokens and ids[0] == tok.bos_id
        got += _split_docs(ids, tok.bos_id)
    # every document is whole in exactly one split (no mid-document cut)
    assert sorted(map(tuple, got)) == sorted(map(tuple, docs))
    val_bytes = meta.splits["val"].bytes
    total = sum(len(t.encode("utf-8")) for t in corpus.iter_documents())
    assert meta.splits["train"].bytes + val_bytes == total
    assert 0.1 < val_bytes / total < 0.3 and meta.splits["val"].documents >= 4
    on_disk = json.loads((tmp_path / "shards" / "meta.json").read_text())
    assert on_disk["tokenizer_fingerprint"] == tok.fingerprint


def test_bounded_chunks_give_identical_shards(tmp_path, corpus_dir, tok):
    corpus = Corpus.from_dir(corpus_dir)
    prepare_shards(corpus, tok, tmp_path / "a", show_progress=False)
    prepare_shards(corpus, tok, tmp_path / "b", chunk_chars=1000, num_threads=2, show_progress=False)
    for f in ("train_00000.bin", "val_00000.bin", "meta.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_single_long_file_gets_a_val_split(tmp_path, tok):
    from pydoc_data.topics import topics

    f = tmp_path / "one.txt"
    f.write_text("\n\n".join(topics.values()), encoding="utf-8")
    meta = prepare_shards(Corpus.from_file(f), tok, tmp_path / "s", show_progress=False)
    assert meta.splits["val"].tokens > 0
    assert 0.05 < meta.splits["val"].bytes / (meta.splits["val"].bytes + meta.splits["train"].bytes) < 0.2
    assert split_long_document("aaaa\n\nbbbb\ncccc", 7) == ["aaaa\n\n", "bbbb\n", "cccc"]
    assert "".join(split_long_document("x" * 25, 10)) == "x" * 25


def test_prepare_shards_still_imports_from_shards():
    from microtransformer.data import shards

    assert shards.prepare_shards is prepare_shards and shards.split_long_document is split_long_document


def test_dtype_choice():
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32


def test_existing_shards_are_not_overwritten(tmp_path, corpus_dir, tok):
    corpus = Corpus.from_dir(corpus_dir)
    prepare_shards(corpus, tok, tmp_path / "s", show_progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    with pytest.raises(DataError, match="--overwrite"):
        prepare_shards(corpus, tok, tmp_path / "s", val_fraction=0.5, show_progress=False)
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir()}


def test_loader_batches_and_typed_errors(tmp_path, corpus_dir, tok):
    prepare_shards(Corpus.from_dir(corpus_dir), tok, tmp_path / "s", show_progress=False)
    ds = ShardDataset(tmp_path / "s", block_size=32)
    x, y = ds.get_batch("train", 5, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    x2, _ = ds.get_batch("train", 5, np.random.default_rng(0))
    assert torch.equal(x, x2)  # seeded windows repeat

    n_val = read_meta(tmp_path / "s").splits["val"].tokens
    with pytest.raises(DataError, match="lower --block_size"):
        ShardDataset(tmp_path / "s", block_size=n_val)
    with pytest.raises(DataError, match="not a shards directory"):
        ShardDataset(tmp_path, block_size=8)
    val = tmp_path / "s" / "val_00000.bin"
    val.write_bytes(val.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        ShardDataset(tmp_path / "s", block_size=8)


def test_bpe_dataset_tutorial_api(tok):
    from pydoc_data.topics import topics

    ds = BPEDataset(topics["if"] + topics["for"], 16, "cpu", tokenizer=tok)
    x, y = ds.get_batch("val", 3)
    assert x.shape == (3, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(DataError):
        BPEDataset("tiny", 64, "cpu", tokenizer=tok)


def _edit_meta(shards, change) -> None:
    meta = json.loads((shards / "meta.json").read_text())
    change(meta)
    (shards / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["../outside.bin", "/etc/passwd", "sub/train.bin", ".."])
def test_meta_json_file_names_stay_in_the_shards_directory(tmp_path, corpus_dir, tok, name):
    shards = tmp_path / "s"
    prepare_shards(Corpus.from_dir(corpus_dir), tok, shards, show_progress=False)
    (tmp_path / "outside.bin").write_bytes((shards / "train_00000.bin").read_bytes())  # same size: would pass every check
    _edit_meta(shards, lambda m: m["splits"]["train"].update(files=[name]))
    with pytest.raises(DataError, match="not a plain file name"):
        read_meta(shards)


def test_hand_damaged_shards_are_typed_errors(tmp_path, corpus_dir, tok):
    shards = tmp_path / "s"
    prepare_shards(Corpus.from_dir(corpus_dir), tok, shards, show_progress=False)
    train = np.memmap(shards / "train_00000.bin", dtype=np.uint16, mode="r+")
    train[100] = tok.vocab_size + 7  # an id the model's embedding does not have
    train.flush()
    del train
    with pytest.raises(DataError, match=f"holds token id {tok.vocab_size + 7}.*vocab_size {tok.vocab_size}"):
        ShardDataset(shards, block_size=8)
    _edit_meta(shards, lambda m: m.update(dtype="float99"))
    with pytest.raises(DataError, match="dtype 'float99'"):
        read_meta(shards)


@pytest.mark.parametrize("option", [{"max_piece_chars": 0}, {"chunk_chars": -1}, {"num_threads": 0}])
def test_sizes_below_one_are_refused_before_anything_is_written(tmp_path, corpus_dir, tok, option):
    from microtransformer.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a positive integer"):
        prepare_shards(Corpus.from_dir(corpus_dir), tok, tmp_path / "s", show_progress=False, **option)
    assert not (tmp_path / "s").exists()


def test_one_large_file_is_streamed_into_the_same_shards(tmp_path, tok):
    """Reading in blocks and cutting pieces as they stream gives the shards of the in-memory cut."""
    from pydoc_data.topics import topics

    from microtransformer.data.prepare import auto_piece_chars

    text = "".join(topics[k] for k in sorted(topics)[:50])
    f = tmp_path / "one.txt"
    f.write_text(text, encoding="utf-8")
    corpus = Corpus.from_file(f)
    meta = prepare_shards(corpus, tok, tmp_path / "s", val_fraction=0.1, show_progress=False)
    pieces = split_long_document(text, auto_piece_chars(corpus, 0.1))
    ids = _ids(tmp_path / "s", "train").tolist() + _ids(tmp_path / "s", "val").tolist()
    assert meta.splits["train"].documents + meta.splits["val"].documents == len(pieces) > 10
    assert sorted(ids) == sorted([tok.bos_id] + [i for p in pieces for i in tok.encode(p)])
    assert sum(info.bytes for info in meta.splits.values()) == len(text.encode("utf-8"))
