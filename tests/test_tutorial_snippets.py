"""The tutorials' model-side snippets, run on our objects.

Each test holds a snippet as the tutorial prints it; only the import path
changes (``micro_tokenization`` -> ``microtransformer``; the tutorial's own
``BPEDataset`` class -> ours), plus, where the snippet uses another library's
return type, the one substitution written next to it:

- seed 000, step 5: ``tokenizer.encode(prompt, return_tensors="pt", ...)["input_ids"]``
  indexes the result like a dict, but ``encode`` returns ids (a tensor here,
  as in Hugging Face); the call that returns the dict is ``tokenizer(prompt, ...)``.
- seed 003, section 5: ``tok.encode(prompt).ids`` (a ``tokenizers.Encoding``)
  -> ``tok.encode(prompt)`` (our ids are already a list).
- seed 001, PyTorch loop: ``logits = model(x)`` (the tutorial's own model
  returns a tensor) -> ``logits, _ = model(x)`` (ours returns logits and loss).

The tests then check the snippets' results against our own API.
"""

from __future__ import annotations

import math

import pytest
import torch

from microtransformer.models import GPT, GPTConfig

TEXTS = [
    "the quick brown fox jumps over the lazy dog. ",
    "a tokenizer turns text into ids and back again. ",
    "Example sentence 1. Example sentence 2. ",
]


@pytest.fixture
def pretrained(tmp_path, monkeypatch):
    """A tokenizer saved at the tutorial's path ``micro_tokenization/pretrained`` (in a temporary cwd)."""
    from microtransformer import MicroTransformerTokenizer

    monkeypatch.chdir(tmp_path)
    tok = MicroTransformerTokenizer.train_from_iterator(
        [t * 20 for t in TEXTS], vocab_size=400, special_tokens=["[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    )
    tok.save("micro_tokenization/pretrained")
    return tok


def test_seed_000_step_3_model_star_star_inputs(pretrained):
    model = GPT(GPTConfig(vocab_size=pretrained.vocab_size, n_layer=2, n_head=2, n_embd=32))

    # --- seed 000, step 3 (import path changed) ---
    from microtransformer import MicroTransformerTokenizer, prepare_input_for_batch

    # Load the trained tokenizer
    tokenizer = MicroTransformerTokenizer.from_pretrained("micro_tokenization/pretrained")

    # For simple language modeling with your transformer
    def prepare_training_batch(texts, max_length=128):
        inputs = prepare_input_for_batch(
            texts,
            tokenizer,
            max_length=max_length,
            padding=True,
            truncation=True,
            return_tensors="pt"
        )
        return inputs

    # In your training loop
    batch_texts = ["Example sentence 1", "Example sentence 2"]
    inputs = prepare_training_batch(batch_texts)
    outputs = model(**inputs)  # Forward pass through your model
    # --- end of snippet ---

    logits, loss = outputs
    assert loss is None and outputs[0] is outputs.logits is logits
    assert logits.shape == (*inputs["input_ids"].shape, tokenizer.vocab_size)
    # the same call with labels trains
    from microtransformer import create_causal_lm_inputs

    out = model(**create_causal_lm_inputs(batch_texts, tokenizer))
    assert out.loss is not None and math.isfinite(out.loss.item())


def test_seed_000_step_5_generate_text(pretrained):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=pretrained.vocab_size, n_layer=2, n_head=2, n_embd=32)).eval()
    from microtransformer import MicroTransformerTokenizer

    tokenizer = MicroTransformerTokenizer.from_pretrained("micro_tokenization/pretrained")

    # --- seed 000, step 5 (substitution: tokenizer.encode(...) -> tokenizer(...), see the module docstring) ---
    def generate_text(model, prompt, max_length=50):
        # Encode the prompt
        inputs = tokenizer(
            prompt,
            return_tensors="pt",
            add_special_tokens=True
        )

        # Generate tokens
        input_ids = inputs["input_ids"]
        for _ in range(max_length):
            # Forward pass
            outputs = model(input_ids)
            next_token_logits = outputs[0][:, -1, :]

            # Get the next token (greedy decoding)
            next_token = torch.argmax(next_token_logits, dim=-1).unsqueeze(-1)

            # Append to the sequence
            input_ids = torch.cat([input_ids, next_token], dim=-1)

            # Stop if we generate an EOS token
            if next_token.item() == tokenizer.token_to_id("[SEP]"):
                break

        # Decode the generated tokens
        generated_text = tokenizer.decode(input_ids[0].tolist(), skip_special_tokens=True)
        return generated_text
    # --- end of snippet ---

    with torch.no_grad():
        text = generate_text(model, "the quick")
    ids = tokenizer.encode("the quick", add_special_tokens=True, return_tensors="pt")
    ours = model.generate(ids, max_new_tokens=50, do_sample=False, eos_token_id=tokenizer.token_to_id("[SEP]"))
    assert text == tokenizer.decode(ours[0].tolist(), skip_special_tokens=True)
    assert ours.shape[1] > ids.shape[1]


def test_seed_003_training_snippet():
    """Sections 3 and 4: BPEDataset + get_batch, the model sized from it, warmup + cosine, ``logits, loss = model(x, y)``."""
    texts = [t * 30 for t in TEXTS]

    # --- seed 003, section 3 (import path: our BPEDataset instead of the class the tutorial defines) ---
    from microtransformer.data.loader import BPEDataset

    ds = BPEDataset(texts, block_size=32, device="cpu")
    x, y = ds.get_batch("train", 8)
    # --- the model: "Initialize it with vocab_size = BPEDataset.vocab_size" ---
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ds.vocab_size, n_layer=2, n_head=2, n_embd=64, block_size=32, dropout=0.1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # --- section 4: the schedule exactly as printed, driving a plain loop ---
    W, T, m, base_lr = 10, 60, 0.1, 3e-3
    from math import cos, pi

    losses = []
    for t in range(T):
        if t < W: factor = (t+1)/W  # noqa: E701
        else:     factor = m + 0.5*(1-m)*(1 + cos(pi * (t-W)/(T-W)))  # noqa: E701
        lr = base_lr * factor
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = ds.get_batch("train", 8)
        logits, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # --- end of snippet ---

    from microtransformer.training.schedule import LRSchedule

    assert x.shape == y.shape == (8, 32) and torch.equal(x[:, 1:], y[:, :-1])
    assert logits.size(-1) == ds.vocab_size
    assert LRSchedule(base_lr, W, T).lr_at(T - 1) == pytest.approx(lr)  # our schedule is the tutorial's
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0  # it learns


def test_seed_003_generation_snippet():
    from microtransformer import MicroTransformerTokenizer

    tok = MicroTransformerTokenizer.train_from_iterator([t * 20 for t in TEXTS], vocab_size=400)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=64)).eval()

    # --- seed 003, section 5 (substitution: tok.encode(prompt).ids -> tok.encode(prompt)) ---
    @torch.no_grad()
    def generate(model, tok, prompt: str, max_new_tokens=300, temperature=0.9, top_k=80, device="cpu"):
        ctx = torch.tensor([tok.encode(prompt)], dtype=torch.long, device=device)
        for _ in range(max_new_tokens):
            idx = ctx[:, -model.block_size:]
            logits, _ = model(idx)
            logits = logits[:, -1, :] / max(temperature, 1e-8)
            if top_k and top_k > 0:
                k = min(int(top_k), logits.size(-1))
                v, _ = torch.topk(logits, k)
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = torch.softmax(logits, dim=-1)
            next_id = torch.multinomial(probs, num_samples=1)
            ctx = torch.cat([ctx, next_id], dim=1)
        return tok.decode(ctx[0].tolist())

    torch.manual_seed(1)
    text = generate(model, tok, "ROMEO:", temperature=0.8, top_k=80)
    print(generate(model, tok, "def train_model(", temperature=0.7, top_k=100))
    # --- end of snippet ---

    # our generate draws the same tokens from the same seed (full recompute, cropped to block_size, like the snippet)
    prompt = tok.encode("ROMEO:")
    ours = model.generate([prompt], max_new_tokens=300, temperature=0.8, top_k=80, use_cache=False,
                          generator=torch.Generator().manual_seed(1))
    assert text == tok.decode(ours[0].tolist())
    assert ours.shape == (1, len(prompt) + 300)


def test_seed_001_pytorch_loop():
    """The PyTorch loop of seed 001 with our model (``logits, _ = model(x)``, see the module docstring)."""
    import torch.nn as nn
    import torch.optim as optim
    from torch.utils.data import DataLoader, Dataset

    from microtransformer import MicroTransformerTokenizer

    sp = MicroTransformerTokenizer.train_from_iterator([t * 20 for t in TEXTS], engine="sentencepiece", vocab_size=400)
    vocab_size = sp.vocab_size

    class TextDataset(Dataset):
        def __init__(self, texts):
            self.data = [torch.tensor(sp.encode(t)) for t in texts]

        def __len__(self):
            return len(self.data)

        def __getitem__(self, idx):
            x = self.data[idx][:-1]  # input tokens
            y = self.data[idx][1:]   # target tokens (next-token prediction)
            return x, y

    def collate_fn(batch):
        xs, ys = zip(*batch)
        xs = nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=0)
        ys = nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=0)
        return xs, ys

    texts = ["Hello world!", "PyTorch integration with SentencePiece.", "Tokenizers are fun to build."]
    loader = DataLoader(TextDataset(texts), batch_size=2, collate_fn=collate_fn)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=32, block_size=64))
    criterion = nn.CrossEntropyLoss(ignore_index=0)
    optimizer = optim.Adam(model.parameters(), lr=0.001)
    first = None
    for epoch in range(3):
        for x, y in loader:
            optimizer.zero_grad()
            logits, _ = model(x)
            loss = criterion(logits.view(-1, vocab_size), y.view(-1))
            loss.backward()
            optimizer.step()
            first = first if first is not None else loss.item()
    assert loss.item() < first
