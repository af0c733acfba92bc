"""The SentencePiece tutorial's TensorFlow script, on a microtransformer tokenizer.

Same eight steps as the tutorial (train the tokenizer if needed, load it,
prepare the data, build Embedding + LSTM + Dense, train, save model and
tokenizer, reload both, predict), with three changes:

- the tokenizer is ours (``--engine sentencepiece`` by default: SentencePiece
  BPE with byte fallback, as in the tutorial) and saves as a directory;
- padding uses the tokenizer's pad id, which the model masks and the loss
  ignores (the tutorial's ``mask_zero=True`` would mask id 0, an ordinary
  token of ours);
- training runs a few hundred steps over a small text, so the loss visibly
  falls, and the reloaded model also generates text.

Requires the optional extra: ``pip install 'microtransformer[tf]'``.

    python examples/tensorflow_keras.py                       # the built-in corpus, 300 steps
    python examples/tensorflow_keras.py --data_file input.txt --steps 1000 --out_dir tf_model
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep its C++ start-up logs quiet


def load_texts(data_file: str | None, max_chars: int) -> list[str]:
    """Paragraphs of ``data_file`` (the tutorial's input.txt) or of the built-in corpus."""
    from microtransformer.data.corpus import Corpus

    corpus = Corpus.from_file(data_file) if data_file else Corpus.builtin()
    texts: list[str] = []
    size = 0
    for doc in corpus.iter_documents():
        for para in doc.split("\n\n"):
            if para.strip() and size < max_chars:
                texts.append(para.strip())
                size += len(para)
    return texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_file", default=None, help="a text file (default: the built-in corpus)")
    ap.add_argument("--max_chars", type=int, default=60_000, help="use this much text")
    ap.add_argument("--out_dir", default="runs/tensorflow_keras", help="tokenizer and model go here")
    ap.add_argument("--engine", default="sentencepiece")
    ap.add_argument("--vocab_size", type=int, default=1000)
    ap.add_argument("--max_length", type=int, default=48, help="tokens per training text")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300, help="training steps (batches)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import keras

    from microtransformer import MicroTransformerTokenizer
    from microtransformer.integrations import (
        build_keras_lstm,
        keras_generate_text,
        load_keras,
        save_keras,
        to_tf_dataset,
    )

    out = Path(args.out_dir)
    tokenizer_dir = out / "tokenizer"
    keras.utils.set_random_seed(args.seed)
    texts = load_texts(args.data_file, args.max_chars)

    # === 1. TRAIN TOKENIZER IF NEEDED ===
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        tok = MicroTransformerTokenizer.train_from_iterator(texts, engine=args.engine, vocab_size=args.vocab_size)
        tok.save(tokenizer_dir)
        print("Tokenizer trained.")
    else:
        print("Using existing tokenizer.")

    # === 2. LOAD TOKENIZER ===
    tok = MicroTransformerTokenizer.from_pretrained(tokenizer_dir)
    vocab_size = tok.vocab_size

    # === 3. DATA PREP === (inputs = ids[:-1], targets = ids[1:], padded with the pad id)
    dataset = to_tf_dataset(texts, tok, max_length=args.max_length, batch_size=args.batch_size, seed=args.seed)
    batches_per_epoch = -(-len(texts) // args.batch_size)

    # === 4. MODEL === (Embedding 64 -> LSTM 128 -> Dense, padding masked by our pad id)
    model = build_keras_lstm(vocab_size, pad_id=tok.pad_id, n_embd=64, n_hidden=128, learning_rate=1e-2)

    # === 5. TRAIN ===
    epochs = max(1, round(args.steps / batches_per_epoch))
    history = model.fit(dataset.repeat(), epochs=epochs, steps_per_epoch=max(1, args.steps // epochs), verbose=0)
    losses = history.history["loss"]
    for epoch, loss in enumerate(losses, 1):
        print(f"Epoch {epoch} Loss: {loss:.4f}")

    # === 6. SAVE MODEL + TOKENIZER ===
    save_keras(model, tok, out)
    print(f"Model saved to {out / 'model.keras'} (tokenizer in {tokenizer_dir})")

    # === 7. LOAD MODEL + TOKENIZER ===
    loaded_model, loaded_tok = load_keras(out)

    # === 8. INFERENCE ===
    import numpy as np

    test_text = "The for statement"
    ids = loaded_tok.encode(test_text)
    logits = loaded_model(np.array([ids], dtype=np.int32), training=False)
    next_id = int(np.argmax(logits[0, -1]))
    before = int(np.argmax(model(np.array([ids], dtype=np.int32), training=False)[0, -1]))
    print(f"Input: {test_text}")
    print(f"Predicted next token: {loaded_tok.id_to_token(next_id)!r} (before saving: {tok.id_to_token(before)!r})")
    print("Greedy:", repr(keras_generate_text(loaded_model, loaded_tok, test_text, max_new_tokens=20, temperature=0)))
    print("Top-k: ", repr(keras_generate_text(loaded_model, loaded_tok, test_text, max_new_tokens=20,
                                              temperature=0.8, top_k=40, seed=args.seed)))
    if next_id != before:
        print("error: the reloaded model predicts another token", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
