"""Run directories written by release 0.1.0 still load and generate what that release generated.

The fixtures in ``tests/fixtures/legacy_runs`` (see its README) were written by
the old code together with the ids it generated from them; today's
``load_run``, ``generate_ids``, ``model.generate`` and ``mtx sample`` must
give the same ids and text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from microtransformer.sampling import SamplingConfig, encode_prompt, generate, generate_ids, stop_ids_for
from microtransformer.training.checkpoint import load_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_runs"
GOLDEN = json.loads((FIXTURES / "golden.json").read_text())


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_legacy_run_loads_and_generates_the_same_ids(kind):
    model, tok, info = load_run(FIXTURES / kind)
    assert info.step == 20 and info.meta["model"]["kind"] == kind
    golden = GOLDEN[kind]
    prompt = encode_prompt(tok, golden["prompt"])
    assert prompt == golden["prompt_ids"]
    stops = stop_ids_for(tok)
    greedy = list(generate_ids(model, prompt, max_new_tokens=20, temperature=0, stop_ids=stops))
    sampled = list(generate_ids(model, prompt, max_new_tokens=20, temperature=1.0, top_k=20, seed=5, stop_ids=stops))
    assert greedy == golden["greedy_ids"]
    assert sampled == golden["sampled_ids"]
    # the model's own generate gives the same greedy ids (no stop token was hit in the golden run)
    out = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=sorted(stops))
    assert out[0, len(prompt) :].tolist() == golden["greedy_ids"]
    text = generate(model, tok, golden["prompt"], SamplingConfig(max_new_tokens=20, temperature=0))
    assert text == tok.decode(golden["greedy_ids"])


def test_mtx_sample_on_a_legacy_run(capsys):
    from microtransformer.cli.main import main

    golden = GOLDEN["gpt"]
    argv = ["sample", "--ckpt", str(FIXTURES / "gpt"), "--prompt", golden["prompt"], "--temperature", "0",
            "--max_new_tokens", "20"]
    assert main(argv) == 0
    _, tok, _ = load_run(FIXTURES / "gpt")
    assert capsys.readouterr().out == golden["prompt"] + tok.decode(golden["greedy_ids"]) + "\n"


def test_a_legacy_run_resumes_with_the_random_windows_it_was_trained_on():
    from microtransformer.training.trainer import TrainConfig

    saved = json.loads((FIXTURES / "gpt" / "run.json").read_text())["train_config"]
    assert "sampling" not in saved
    assert TrainConfig.from_dict(saved).sampling == "random"
