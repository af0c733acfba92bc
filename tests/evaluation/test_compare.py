"""compare_tokenizers through the Python API: loaded dirs, a held-out file inside the corpus, no-GPT ordering."""

from __future__ import annotations

import json

import pytest

from microtransformer import MicroTransformerTokenizer
from microtransformer.errors import CorpusError, MicroTransformerError
from microtransformer.evaluation.compare import (
    CompareConfig,
    compare_tokenizers,
    format_table,
)
from microtransformer.evaluation.compare_report import build_compare_report


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    from pydoc_data.topics import topics

    d = tmp_path_factory.mktemp("books")
    names = sorted(topics)
    (d / "a.txt").write_text("".join(topics[k] for k in names[:30]), encoding="utf-8")
    (d / "b.txt").write_text("".join(topics[k] for k in names[30:50]), encoding="utf-8")
    (d / "held.txt").write_text("".join(topics[k] for k in names[50:55]), encoding="utf-8")
    return d


def test_loaded_dirs_and_heldout_file_without_gpt(books, tmp_path) -> None:
    saved = MicroTransformerTokenizer.train_from_iterator([(books / "a.txt").read_text()], vocab_size=600).save(tmp_path / "mine")
    result = compare_tokenizers(
        books, heldout=books / "held.txt", tokenizer_paths=[saved, saved], show_progress=False,
        config=CompareConfig(engines=("bpe",), vocab_sizes=(300, 700), downstream_seconds=0, threads=1, speed_repeats=1),
    )
    names = [t.name for t in result.tokenizers]
    assert sorted(names) == ["bpe-300", "bpe-600", "bpe-600 (mine)", "bpe-700"]
    assert result.sorted_by == "bytes_per_token"
    bpts = [t.heldout.bytes_per_token for t in result.tokenizers]
    assert bpts == sorted(bpts, reverse=True) and names.index("bpe-700") < names.index("bpe-300")
    assert "held.txt left out" in result.corpus["train"] and result.corpus["heldout"].endswith("held.txt")
    loaded = next(t for t in result.tokenizers if t.name == "bpe-600")
    assert loaded.training is None and loaded.source == str(saved) and loaded.downstream is None
    assert all(t.round_trip_ok for t in result.tokenizers)
    data = json.loads(json.dumps(result.to_json()))  # JSON-clean
    assert [t["name"] for t in data["tokenizers"]] == names and data["tokenizers"][0]["downstream"] is None
    table = format_table(result)
    assert "bytes per token (higher is better" in table and table.index(names[0]) < table.index(names[-1])
    html = build_compare_report(result)
    assert html.count("data:image/png;base64,") == 2  # no GPT: vocab-size plot and token lengths only


def test_heldout_must_leave_text_to_train_on(books) -> None:
    with pytest.raises(CorpusError, match="whole corpus"):
        compare_tokenizers(books / "held.txt", heldout=books / "held.txt", show_progress=False,
                           config=CompareConfig(engines=("bpe",), vocab_sizes=(300,), downstream_seconds=0))


@pytest.mark.parametrize("bad", [
    {"vocab_sizes": (0,)}, {"engines": ("bpe", "bpe")}, {"holdout_fraction": 1.0}, {"downstream_seconds": -1},
    {"n_embd": 30, "n_head": 4}, {"threads": 0}, {"device": "tpu"}, {"engines": ("nope",)},
])
def test_config_is_checked_before_any_work(bad) -> None:
    with pytest.raises(MicroTransformerError):  # ConfigError, or UnknownEngineError for an engine name
        CompareConfig(**bad)
    assert CompareConfig.from_dict(CompareConfig().to_dict()) == CompareConfig()
