"""LoRA training on a tiny Llama: the loss, the adapter folder, determinism, resuming, merging, loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from plait.tune.data import read_examples  # noqa: E402
from plait.tune.lora import TuneConfig, _batch, _loss, train  # noqa: E402
from tests.tune.conftest import conversation, write_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAST = {"batch_size": 4, "learning_rate": 5e-3, "rank": 4, "alpha": 8, "seed": 3}


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def _max_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_left_padded_loss_equals_transformers_loss(tiny_base: Path, tokenizer: Any, train_file: Path) -> None:
    """The loss over the kept logits (left padding) is transformers' own loss with right padding."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    examples = read_examples(train_file, tokenizer).examples[:3]
    examples[1].ids, examples[1].labels = examples[1].ids[:-3] + [7] * 9, examples[1].labels[:-3] + [7] * 9
    batch = _batch(examples, 2, "cpu")
    assert batch["keep"] < batch["input_ids"].shape[1]  # logits for the answers only
    width = max(len(e.ids) for e in examples)
    ids = torch.full((3, width), 2)
    labels = torch.full((3, width), -100)
    mask = torch.zeros((3, width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, :len(e.ids)], labels[row, :len(e.ids)], mask[row, :len(e.ids)] = (
            torch.tensor(e.ids), torch.tensor(e.labels), 1)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        got = _loss(model, batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_trains_a_standard_adapter_with_a_model_card(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    lines: list[str] = []
    figures = train(train_file, str(tiny_base), out, TuneConfig(max_steps=12, **FAST), progress=False,
                    log=lines.append)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "plait-tune.json"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()
    assert "12 conversations, 0 bad lines" in lines[0] and "trained on (assistant turns only)" in lines[0]
    assert figures["train_examples"] == 11 and figures["eval_examples"] == 1 and figures["steps"] == 12
    assert figures["eval_loss_after"] < figures["eval_loss_before"]  # it learned the answers' shape
    assert figures["train_loss_last"] < figures["train_loss_first"]
    card = (out / "README.md").read_text()
    assert "library_name: peft" in card and f"| eval loss | {figures['eval_loss_before']} before" in card
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_same_seed_same_adapter_other_seed_other(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    """Same seed and thread count: the same adapter (up to float rounding, 1e-6); another seed: far apart."""
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(train_file, str(tiny_base), tmp_path / name, TuneConfig(max_steps=6, **{**FAST, "seed": seed}),
              progress=False, log=None)
        runs[name] = _weights(tmp_path / name)
    assert _max_diff(runs["a"], runs["b"]) <= 1e-6
    assert _max_diff(runs["a"], runs["c"]) > 1e-3


def _tune_cmd(data: Path, base: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "plait.cli", "tune", str(data), "--model", f"local:{base}", "--out", str(out),
            "--steps", "16", "--batch-size", "2", "--lr", "5e-3", "--rank", "4", "--seed", "3",
            "--checkpoint-every", "4", "--no-progress", *extra]


def test_a_killed_run_resumes_to_the_same_adapter(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_tune_cmd(train_file, tiny_base, whole), check=True, env=env, capture_output=True)
    child = subprocess.Popen(_tune_cmd(train_file, tiny_base, killed), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list((killed / "checkpoints").glob("step-*/trainer.pt")):  # poll for the first checkpoint
            assert child.poll() is None, "the run ended before writing a checkpoint"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "adapter_model.safetensors").exists()
    done = subprocess.run(_tune_cmd(train_file, tiny_base, killed), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr
    assert _max_diff(_weights(whole), _weights(killed)) <= 1e-6
    losses = [json.loads((d / "plait-tune.json").read_text())["train_loss_last"] for d in (whole, killed)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_checkpoints_of_another_run_are_refused(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _tune_cmd(train_file, tiny_base, out)
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list((out / "checkpoints").glob("step-*/trainer.pt")):
        assert child.poll() is None
        time.sleep(0.05)
    child.kill()
    child.wait()
    other = subprocess.run(cmd[:-1] + ["--seed", "9", "--no-progress"], env=env, capture_output=True, text=True)
    assert other.returncode == 1 and "checkpoints of a different run" in other.stderr


def test_adapter_loads_in_peft_plait_and_merged(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    """peft's own loader, plait's chat model with adapter=, and the --merge folder give the same logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from plait.local_models.llm.transformers_chat import TransformersChatModel
    from plait.models import chat_model_from_spec

    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    config = TuneConfig(max_steps=8, **FAST)
    train(train_file, f"local:{tiny_base}", adapter, config, progress=False, log=None)
    train(train_file, f"local:{tiny_base}", merged, config, merge=True, progress=False, log=None)
    ids = torch.tensor([[1, 520, 9531, 198, 1780, 314, 260]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
        plain = base(ids).logits[0, -1]
        by_peft = PeftModel.from_pretrained(base, adapter).eval()(ids).logits[0, -1]
        by_merge = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits[0, -1]
    torch.testing.assert_close(by_merge, by_peft, atol=1e-5, rtol=1e-5)
    assert float((by_peft - plain).abs().max()) > 1e-2  # the adapter changes the model
    assert "library_name: transformers" in (merged / "README.md").read_text()

    model = TransformersChatModel(tiny_base, adapter=adapter).load()
    engine = model._engine
    with torch.inference_mode():
        engine.decoder.start(16)
        got = engine.decoder.step(ids[0])
    torch.testing.assert_close(got, by_peft, atol=1e-4, rtol=1e-4)
    assert model.model_name.endswith("+adapter")
    merged_model = chat_model_from_spec(f"local:{merged}")
    assert model.invoke("Fact 3?", max_tokens=6).content == merged_model.invoke("Fact 3?", max_tokens=6).content
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        TransformersChatModel(tiny_base, adapter=tmp_path)


def test_cli_check_reports_bad_lines(tiny_base: Path, tmp_path: Path) -> None:
    from plait.cli import main

    path = write_jsonl(tmp_path / "d.jsonl", [conversation(0), "{oops", conversation(1)])
    assert main(["tune", str(path), "--model", f"local:{tiny_base}", "--check"]) == 1
    good = write_jsonl(tmp_path / "g.jsonl", [conversation(0)])
    assert main(["tune", str(good), "--model", f"local:{tiny_base}", "--check"]) == 0
    assert main(["tune", str(good), "--model", f"local:{tiny_base}"]) == 2  # no --out


@pytest.mark.slow
def test_bundled_model_trains_and_answers_with_the_adapter(tmp_path: Path) -> None:
    """A few steps on the bundled SmolLM2 (dequantized GGUF); the adapted model runs through the int4 decoder."""
    from plait.models import chat_model_from_spec

    rows = [conversation(i) for i in range(8)]
    data = write_jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "cite"
    figures = train(data, "local", out, TuneConfig(max_steps=3, batch_size=2, rank=4, alpha=8, layers=4),
                    progress=False, log=None)
    assert figures["base"] == "local" and figures["adapter_mb"] < 5
    model = chat_model_from_spec(f"local+adapter:{out}")
    answer = model.invoke("Hello", max_tokens=8)
    assert model._engine.quantized and answer.content
    from plait.local_models.llm.engine import adapter_hash

    cached = [p.name for p in Path(figures["base_folder"]).glob("plait-decoder-int4-*")]
    assert any(adapter_hash(out) in name for name in cached), cached


def test_int4_decoder_keeps_the_adapter(tiny_base: Path, train_file: Path, tmp_path: Path) -> None:
    """With int4 weights the adapter runs beside the packed base (low-rank updates), not merged and
    re-packed: its effect on the logits is the float32 one, and the prepared file keeps it bit for bit."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from plait.local_models.llm import llama_decoder, low_rank
    from plait.local_models.llm.transformers_chat import TransformersChatModel

    adapter = tmp_path / "adapter"
    train(train_file, f"local:{tiny_base}", adapter, TuneConfig(max_steps=8, **FAST), progress=False, log=None)
    ids = torch.tensor([1, 520, 9531, 198, 1780, 314, 260])

    def logits(decoder: Any) -> Any:
        with torch.inference_mode():
            decoder.start(16)
            return decoder.step(ids)

    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base).eval(), adapter)
    with torch.no_grad():
        float_effect = peft(ids[None]).logits[0, -1] - base(ids[None]).logits[0, -1]
    packed = llama_decoder.LlamaDecoder(base, quantize="int4")
    adapted = llama_decoder.LlamaDecoder(base, quantize="int4", lora=low_rank.low_rank_updates(peft))
    int4_effect = logits(adapted) - logits(packed)
    cosine = torch.nn.functional.cosine_similarity(int4_effect, float_effect, dim=0)
    assert cosine > 0.98 and float(float_effect.abs().max()) > 1e-2, cosine
    adapted.save(tmp_path / "prepared.safetensors")
    assert torch.equal(logits(llama_decoder.LlamaDecoder.load(tmp_path / "prepared.safetensors")), logits(adapted))
    model = TransformersChatModel(tiny_base, adapter=adapter, quantize="int4").load()
    assert isinstance(model._engine.decoder.layers[0][1], low_rank.LowRank)
    torch.testing.assert_close(logits(model._engine.decoder), logits(adapted), atol=1e-3, rtol=1e-3)
