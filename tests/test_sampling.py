"""Sampling: greedy/top-k/top-p rules, KV cache == full recompute, streaming UTF-8, EOS, bad runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from microtransformer.errors import CheckpointError, ConfigError
from microtransformer.models import GPT, GPTConfig, LSTMConfig, LSTMLanguageModel
from microtransformer.sampling import SamplingConfig, generate, generate_ids, sample_next_token, stream



# ----------------------------------------------------------- next-token rules
def test_temperature_zero_is_argmax_and_top_k_is_clamped():
    logits = torch.randn(3, 50)
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(-1))
    g = torch.Generator().manual_seed(0)
    out = sample_next_token(logits, temperature=1.0, top_k=10**6, generator=g)  # no "index out of range"
    assert out.shape == (3,)
    assert torch.equal(sample_next_token(logits, temperature=1.0, top_k=1, generator=g), logits.argmax(-1))


def test_top_k_and_top_p_restrict_candidates():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next_token(logits, top_k=2, generator=g)) for _ in range(300)}
    assert draws == {0, 1}
    draws = {int(sample_next_token(logits, top_p=0.8, generator=g)) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8
    draws = {int(sample_next_token(logits, top_p=0.01, generator=g)) for _ in range(50)}
    assert draws == {0}  # the top token always stays


def test_padding_ids_are_never_sampled():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=70, n_layer=1, n_head=1, n_embd=16, block_size=64))
    out = list(generate_ids(model, [1, 2, 3], max_new_tokens=60, temperature=5.0, seed=0))
    assert len(out) == 60 and max(out) < 70


def test_bad_sampling_settings():
    for kw in (dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5), dict(max_new_tokens=-1)):
        with pytest.raises(ConfigError):
            SamplingConfig(**kw)


# ------------------------------------------------- fast path == slow reference
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kv_cache_greedy_equals_full_recompute_gpt(seed):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=97, n_layer=2, n_head=2, n_embd=32, block_size=48, dropout=0.1))
    prompt = torch.randint(0, 97, (7,)).tolist()
    cached = list(generate_ids(model, prompt, max_new_tokens=40, temperature=0, use_cache=True))
    naive = list(generate_ids(model, prompt, max_new_tokens=40, temperature=0, use_cache=False))
    assert cached == naive and len(cached) == 40
    assert model.training  # training mode restored


def test_kv_cache_greedy_equals_full_recompute_lstm():
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=50, n_embd=16, n_hidden=32, n_layer=2))
    cached = list(generate_ids(model, [1, 2, 3], max_new_tokens=30, temperature=0, use_cache=True))
    naive = list(generate_ids(model, [1, 2, 3], max_new_tokens=30, temperature=0, use_cache=False))
    assert cached == naive


def test_kv_cache_keeps_going_past_block_size_and_seeded_sampling_repeats():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=16))
    a = list(generate_ids(model, [1] * 20, max_new_tokens=50, temperature=1.0, top_k=5, seed=3))
    b = list(generate_ids(model, [1] * 20, max_new_tokens=50, temperature=1.0, top_k=5, seed=3))
    assert a == b and len(a) == 50


# ------------------------------------------------------ streaming and stopping
class ScriptedModel(nn.Module):
    """Emits a fixed script of token ids, whatever the input (cache or full recompute)."""

    kind = "scripted"

    def __init__(self, vocab_size: int, script: list[int], prompt_len: int) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"vocab_size": vocab_size})()
        self.context_limit = None
        self.script = script
        self.prompt_len = prompt_len
        self.w = nn.Parameter(torch.zeros(1))

    def new_cache(self, batch_size: int):
        return type("Cache", (), {"pos": 0})()

    def forward(self, idx, targets=None, *, cache=None, last_only=False):
        n = idx.shape[1] + (cache.pos if cache is not None else 0)
        if cache is not None:
            cache.pos = n
        logits = torch.full((1, 1, self.config.vocab_size), -1e9)
        logits[0, 0, self.script[n - self.prompt_len]] = 0.0
        return logits, None


@pytest.fixture(scope="module")
def byte_tokenizer():
    from microtransformer.tokenization import MicroTransformerTokenizer

    # 256 byte tokens + specials: every non-ASCII character spans several tokens
    return MicroTransformerTokenizer.train_from_iterator(["hello world"], engine="bpe", vocab_size=256 + 12)


def test_stream_never_emits_replacement_chars_mid_character(byte_tokenizer):
    tok = byte_tokenizer
    text = "naïve café — 日本語 🙂!"
    script = tok.encode(text) + [tok.eos_id, 5, 5]
    prompt_len = len([tok.bos_id] + tok.encode("A"))
    model = ScriptedModel(tok.vocab_size, script, prompt_len)
    pieces = list(stream(model, tok, "A", max_new_tokens=100, temperature=0))
    assert "".join(pieces) == text  # stopped at EOS, EOS not printed
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) < len(tok.encode(text))  # multi-byte characters were held back and joined
    # the slow path gives the same text
    assert generate(model, tok, "A", max_new_tokens=100, temperature=0, use_cache=False) == text


def test_stream_of_a_tokenizer_with_a_space_after_each_line_break_prints_the_text():
    from microtransformer.tokenization import MicroTransformerTokenizer

    book = "a line of hard-wrapped text\nwrapped at a column\n\nand more text\n" * 30
    tok = MicroTransformerTokenizer.train_from_iterator([book], vocab_size=300, special_tokens="nanochat",
                                                        space_after_newline=True)
    text = "wrapped text\nat a column\n\nand more\n"
    script = tok.encode(text) + [tok.bos_id]
    assert tok.encode("text\nat")[-len(tok.encode(" at")):] == tok.encode(" at")  # the space is in the ids
    model = ScriptedModel(tok.vocab_size, script, prompt_len=1)
    assert "".join(stream(model, tok, "", max_new_tokens=100, temperature=0)) == text  # and not in the text
    assert generate(model, tok, "", max_new_tokens=100, temperature=0) == text


def test_stream_stops_at_bos_document_boundary(byte_tokenizer):
    tok = byte_tokenizer
    script = tok.encode("ab") + [tok.bos_id] + tok.encode("cd")
    model = ScriptedModel(tok.vocab_size, script, prompt_len=1)
    assert generate(model, tok, "", max_new_tokens=10, temperature=0) == "ab"


# ----------------------------------------------------------- run dirs, typed errors
def _train_tiny_run(tmp_path, tok):
    from microtransformer.data.loader import BPEDataset
    from microtransformer.training.trainer import TrainConfig, Trainer

    data = BPEDataset("the quick brown fox jumps over the lazy dog. " * 40, block_size=16, tokenizer=tok)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16))
    cfg = TrainConfig(max_steps=2, batch_size=2, eval_interval=2, eval_iters=1, device="cpu", precision="fp32")
    Trainer(model, data, cfg, tmp_path / "run", tokenizer=tok, show_progress=False).fit()
    return tmp_path / "run"


def test_load_run_and_tokenizer_vocab_mismatch(tmp_path, byte_tokenizer):
    from microtransformer.tokenization import MicroTransformerTokenizer
    from microtransformer.training.checkpoint import load_run

    run = _train_tiny_run(tmp_path, byte_tokenizer)
    model, tok, info = load_run(run)
    assert info.step == 2 and tok.vocab_size == byte_tokenizer.vocab_size
    assert isinstance(generate(model, tok, "the", max_new_tokens=5, temperature=0.0), str)

    other = MicroTransformerTokenizer.train_from_iterator(["hello world " * 50], engine="bpe", vocab_size=256 + 12 + 5)
    other.save(tmp_path / "other_tok")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="vocab_size"):
        load_run(run, tokenizer_path=tmp_path / "other_tok")
    # the run's own tokenizer replaced by a different one: same typed error
    import shutil

    shutil.rmtree(run / "tokenizer")
    other.save(run / "tokenizer")
    with pytest.raises(CheckpointError, match="not the tokenizer the model was trained with"):
        load_run(run)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tokenizer" not in p.parts}
    assert after == {p: b for p, b in before.items() if "tokenizer" not in p.parts}


def test_load_run_without_metadata(tmp_path):
    from microtransformer.training.checkpoint import load_run

    (tmp_path / "notarun").mkdir()
    with pytest.raises(CheckpointError, match="not a microtransformer run directory"):
        load_run(tmp_path / "notarun")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "missing")


def test_generate_a_list_of_prompts_is_one_batch_equal_to_each_alone(byte_tokenizer):
    tok = byte_tokenizer
    for model in (
        GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=64)),
        LSTMLanguageModel(LSTMConfig(vocab_size=tok.vocab_size, n_embd=16, n_hidden=16)),
    ):
        prompts = ["hello world", "h", ""]
        cfg = SamplingConfig(max_new_tokens=12, temperature=0)
        assert generate(model, tok, prompts, cfg) == [generate(model, tok, p, cfg) for p in prompts]
    assert generate(model, tok, [], cfg) == []
