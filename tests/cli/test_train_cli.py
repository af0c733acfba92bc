"""``mtx data prepare`` / ``train`` / ``sample`` / ``quickstart`` end to end, tiny and fast."""

from __future__ import annotations

import json

import pytest

from microtransformer.cli.main import main
from microtransformer.models.window_cache import LAMBDAS, THETAS
from microtransformer.tokenization import MicroTransformerTokenizer




TINY_MODEL = ["--n_layer", "1", "--n_head", "2", "--n_embed", "32", "--block_size", "32"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from pydoc_data.topics import topics

    path = tmp_path_factory.mktemp("text") / "input.txt"
    path.write_text("".join(topics[k] for k in ("assignment", "if", "class", "for", "while", "try")), encoding="utf-8")
    return path


def test_tutorial_flags_train_sample_resume(tmp_path, text_file, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data_file", str(text_file), "--vocab_size", "400", *TINY_MODEL, "--batch_size", "4",
            "--grad_accum_steps", "2", "--max_steps", "4", "--warmup_steps", "1", "--lr", "3e-3", "--use_cosine",
            "--dropout", "0.1", "--eval_interval", "2", "--eval_iters", "1", "--device", "cpu", "--out_dir", str(run)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and f"mtx train --resume {run}" in out
    assert (run / "run.json").is_file() and (run / "tokenizer" / "tokenizer_config.json").is_file()
    saved = json.loads((run / "run.json").read_text())
    assert saved["model"]["config"]["n_embd"] == 32 and saved["train_config"]["use_cosine"] is True
    hf_config = json.loads((run / "tokenizer" / "tokenizer_config.json").read_text())
    assert hf_config["model_max_length"] == saved["model"]["config"]["block_size"]  # known here: the model's context

    # a second fresh run into the same dir is refused, nothing overwritten
    before = (run / "last.json").read_bytes()
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err and (run / "last.json").read_bytes() == before

    assert main(["train", "--resume", str(run), "--max_steps", "6"]) == 0
    assert json.loads((run / "last.json").read_text())["step"] == 6
    capsys.readouterr()

    assert main(["sample", "--ckpt", str(run), "--prompt", "The ", "--max_new_tokens", "8", "--temperature", "0",
                 "--top_k", "100000", "--seed", "1", "--stream"]) == 0
    assert capsys.readouterr().out.startswith("The ")


def test_data_prepare_then_train_from_shards(tmp_path, text_file, capsys):
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", "--data_file", str(text_file), "--output_dir", str(tok), "--vocab_size", "300"]) == 0
    shards = tmp_path / "shards"
    assert main(["data", "prepare", "--tokenizer_path", str(tok), "--data_file", str(text_file),
                 "--output_dir", str(shards), "--val_fraction", "0.2"]) == 0
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["splits"]["val"]["tokens"] > 0
    capsys.readouterr()
    # block_size larger than the val shard: typed error, nothing written
    huge = str(meta["splits"]["val"]["tokens"] + 10)
    run = tmp_path / "run"
    assert main(["train", "--shards_dir", str(shards), "--block_size", huge, "--out_dir", str(run), "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "lower --block_size" in err and not run.exists()
    assert main(["train", "--shards_dir", str(shards), "--model", "lstm", "--n_embd", "16", "--n_hidden", "32",
                 "--block_size", "16", "--batch_size", "2", "--max_steps", "2", "--eval_iters", "1",
                 "--device", "cpu", "--out_dir", str(run)]) == 0
    assert main(["sample", "--ckpt", str(run), "--max_new_tokens", "5", "--seed", "0"]) == 0


def test_sample_errors_are_typed(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["sample", "--ckpt", str(tmp_path / "empty")]) == 2
    assert "run.json" in capsys.readouterr().err


def test_quickstart_tiny(tmp_path, capsys):
    out = tmp_path / "qs"
    argv = ["quickstart", "--out_dir", str(out), "--vocab_size", "400", "--max_steps", "6", "--n_layer", "1",
            "--n_embd", "32", "--block_size", "32", "--batch_size", "4", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for needle in ("before", "after", "bits/byte", "perplexity", "mtx sample --ckpt", "mtx train --resume"):
        assert needle in printed
    assert (out / "run" / "best.json").is_file() and (out / "shards" / "meta.json").is_file()
    # the default recipe's window cache: its knobs set on the validation split after the last step, in the checkpoint
    meta = json.loads((out / "run" / "checkpoints" / "step_000006" / "meta.json").read_text())
    assert meta["model"]["config"]["cache_theta"] in THETAS and meta["model"]["config"]["cache_lambda"] in (0.0, *LAMBDAS)
    assert main(argv) == 2  # refuses to overwrite without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_model_size_auto_sizes_for_the_precision_the_run_trains_in() -> None:
    """A short budget in fp32 (a CPU without bf16 units, or asked for) gets the narrower shape measured there."""
    from microtransformer.cli.main import build_parser
    from microtransformer.cli.train import resolve_recipe
    from microtransformer.training.recipes import FP32_SIZES, size_for_budget

    base = ["train", "--data_file", "x.txt", "--time_budget", "180", "--model_size", "auto", "--device", "cpu"]
    fp32 = resolve_recipe(build_parser().parse_args([*base, "--precision", "fp32"]))
    bf16 = resolve_recipe(build_parser().parse_args([*base, "--precision", "bf16"]))
    assert fp32.model["n_embd"] == FP32_SIZES[240.0]["n_embd"] != bf16.model["n_embd"] == size_for_budget(180)["n_embd"]
    assert fp32.train["precision"] == "fp32" and bf16.train["precision"] == "bf16"
    assert fp32.model["head_split"] == FP32_SIZES[240.0]["head_split"] and bf16.model.get("head_split", 0) == 0
    same = lambda model: {k: v for k, v in model.items() if k not in FP32_SIZES[240.0]}  # noqa: E731
    assert same(fp32.model) == same(bf16.model)


def test_recipes_time_budget_and_architecture_flags(tmp_path, text_file, capsys):
    from microtransformer.device import training_precision
    from microtransformer.training.recipes import RECIPES, size_for_budget

    run = tmp_path / "budget"
    argv = ["train", "--data_file", str(text_file), "--vocab_size", "300", "--time_budget", "3", "--model_size", "auto",
            "--block_size", "32", "--batch_size", "2", "--eval_iters", "1", "--device", "cpu", "--out_dir", str(run)]
    assert main(argv) == 0
    saved = json.loads((run / "run.json").read_text())
    model, train = saved["model"]["config"], saved["train_config"]
    shape = size_for_budget(3, precision=training_precision())  # the shape for the precision it trains in here
    assert {k: model[k] for k in ("n_layer", "n_embd")} == {k: shape[k] for k in ("n_layer", "n_embd")}
    assert model["position"] == RECIPES["ours"].model["position"] and train["optimizer"] == "muon"
    assert train["time_budget"] == 3 and train["max_steps"] == json.loads((run / "last.json").read_text())["step"]
    assert saved["recipe"] == "ours"
    capsys.readouterr()

    classic = tmp_path / "classic"
    assert main(["train", "--data_file", str(text_file), "--vocab_size", "300", "--recipe", "nanogpt", *TINY_MODEL,
                 "--batch_size", "2", "--max_steps", "2", "--eval_iters", "1", "--mlp", "relu2", "--no-tie_embeddings",
                 "--device", "cpu", "--out_dir", str(classic)]) == 0
    assert not MicroTransformerTokenizer.from_pretrained(classic / "data" / "tokenizer").space_after_newline
    assert main(["train", "--data_file", str(text_file), "--vocab_size", "300", "--recipe", "nanogpt", *TINY_MODEL,
                 "--batch_size", "2", "--max_steps", "1", "--eval_iters", "1", "--space_after_newline", "--device", "cpu",
                 "--out_dir", str(tmp_path / "spaced")]) == 0
    assert MicroTransformerTokenizer.from_pretrained(tmp_path / "spaced" / "data" / "tokenizer").space_after_newline
    saved = json.loads((classic / "run.json").read_text())
    assert saved["train_config"]["optimizer"] == "adamw" and saved["model"]["config"]["position"] == "learned"
    assert saved["model"]["config"]["mlp"] == "relu2" and saved["model"]["config"]["tie_embeddings"] is False
    assert main(["sample", "--ckpt", str(classic), "--max_new_tokens", "4", "--seed", "0"]) == 0
    capsys.readouterr()

    mixed = tmp_path / "mixed"  # the newer options, through training, the checkpoint and cached sampling
    assert main(["train", "--data_file", str(text_file), "--vocab_size", "300", *TINY_MODEL, "--batch_size", "2",
                 "--max_steps", "2", "--eval_iters", "1", "--smear", "--x0_mix", "--matrix_weight_decay", "0.1",
                 "--embedding_weight_decay", "0.01", "--max_epochs", "50", "--bigram_buckets", "128", "--attn_chunk", "8",
                 "--mlp_ratio", "3", "--line_columns", "32",
                 "--sampling", "random", "--device", "cpu", "--out_dir", str(mixed)]) == 0
    assert MicroTransformerTokenizer.from_pretrained(mixed / "data" / "tokenizer").space_after_newline  # ours'
    saved = json.loads((mixed / "run.json").read_text())
    assert saved["model"]["config"]["smear"] is True and saved["model"]["config"]["x0_mix"] is True
    assert saved["model"]["config"]["bigram_buckets"] == 128 and saved["model"]["config"]["attn_chunk"] == 8
    assert saved["model"]["config"]["mlp_ratio"] == 3 and saved["model"]["config"]["line_columns"] == 32
    assert saved["train_config"]["matrix_weight_decay"] == 0.1
    assert saved["train_config"]["embedding_weight_decay"] == 0.01 and saved["train_config"]["max_epochs"] == 50
    assert saved["train_config"]["sampling"] == "random"  # the flag over the recipe's epoch order
    assert main(["sample", "--ckpt", str(mixed), "--max_new_tokens", "4", "--seed", "0"]) == 0
    capsys.readouterr()

    assert main(["train", "--data_file", str(text_file), "--model_size", "auto", "--out_dir", str(tmp_path / "x")]) == 2
    assert "--time_budget" in capsys.readouterr().err
    assert main(["train", "--data_file", str(text_file), "--optimizer", "sgd", "--out_dir", str(tmp_path / "y")]) == 2
    assert "optimizer must be one of adamw, muon" in capsys.readouterr().err
    assert main(["train", "--data_file", str(text_file), "--sampling", "sequential", "--out_dir", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "sampling must be one of random, epoch" in err and "Traceback" not in err
