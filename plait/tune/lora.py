"""LoRA fine-tuning of a local causal language model with peft, on the CPU or a CUDA device.

The loop, written out (a comment per step in :func:`train`): check and tokenize the file
(:mod:`plait.tune.data`), split off an eval set, wrap the base model with peft's LoRA layers, then
AdamW over the LoRA weights with a linear warm-up and decay, the loss only on the assistant tokens.
Every ``checkpoint_every`` steps the LoRA weights, the optimizer and the scheduler go to
``OUT/checkpoints/step-N/`` (written under a temporary name, then renamed), so a killed run started
again with the same arguments resumes from the last checkpoint and ends with the same adapter.

Deterministic: the LoRA initialisation and the order of the examples come from ``seed`` alone (no
dropout), so the same file, arguments, seed, machine and thread count give the same adapter (up to
float rounding, which on a CPU with a fixed thread count is the same bits in practice).

What it writes: a standard PEFT adapter folder (``adapter_config.json``, ``adapter_model.safetensors``),
a model card (``README.md``) with the training figures, and the same figures as ``plait-tune.json``;
with ``merge=True`` a full model folder (weights with the adapter merged in, tokenizer) instead.

Example::

    from plait.tune.lora import TuneConfig, train
    figures = train("train.jsonl", "local", "my-adapter", TuneConfig(epochs=2, seed=1))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plait.defaults import require
from plait.tune.data import IGNORE, DataError, Example, read_examples

#: The projections of Llama-family attention and MLP blocks (SmolLM2, Qwen2, Mistral).
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TuneConfig:
    """How to train. ``max_steps`` overrides ``epochs``; ``layers`` puts LoRA on the last N layers only
    (the backward pass then stops there: faster on a CPU, for changes of style rather than knowledge)."""

    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    learning_rate: float = 2e-4
    rank: int = 16
    alpha: int = 32
    target_modules: tuple[str, ...] = LLAMA_TARGETS
    layers: int | None = None
    eval_fraction: float = 0.1
    max_length: int = 1024
    warmup_steps: int | None = None  # default: 5% of the steps
    seed: int = 0
    checkpoint_every: int = 50
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the model card only


def resolve_base(spec: str) -> tuple[str, str]:
    """``(folder or hub id, label)`` of a local model spec: ``local`` (the bundled SmolLM2 GGUF,
    dequantized once), ``local:PATH_OR_ID``, a folder, a ``.gguf`` file or a hub id."""
    from plait.defaults import smollm2_gguf_path

    name = spec.strip()
    if name == "local":
        name = smollm2_gguf_path()
    elif name.startswith("local:"):
        name = name.removeprefix("local:")
    if name.endswith(".gguf"):
        from plait.local_models.llm.gguf_cache import cached_gguf_folder

        return str(cached_gguf_folder(Path(name).expanduser())), spec
    if os.path.exists(os.path.expanduser(name)):
        return str(Path(name).expanduser().resolve()), spec
    return name, spec


def _file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train, eval)`` example indices: a seeded shuffle, the eval share off the front (none below 10)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(n * fraction)) if fraction > 0 and n >= 10 else 0
    return order[n_eval:], order[:n_eval]


def _batch(examples: list[Example], pad_id: int, device: Any) -> dict[str, Any]:
    """Left-padded ids, attention mask, positions and labels (padding is never trained on).

    Left padding puts every answer at the end of its row, so the logits are computed only for the
    last ``keep`` positions, the ones that predict a trained token: on a RAG example most tokens are
    passages, and the output layer (49,152 words x 576 for SmolLM2) is a fifth of the forward pass.
    """
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    keep = 1
    for row, e in enumerate(examples):
        ids[row, width - len(e.ids):] = torch.tensor(e.ids)
        labels[row, width - len(e.ids):] = torch.tensor(e.labels)
        mask[row, width - len(e.ids):] = 1
        first = next(i for i, t in enumerate(e.labels) if t != IGNORE)
        keep = max(keep, len(e.ids) - first + 1)  # the logit before the first trained token too
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device),
            "labels": labels[:, width - keep + 1:].to(device), "keep": keep}


def _loss(model: Any, batch: dict[str, Any], reduction: str = "mean") -> Any:
    """Cross-entropy of the next token over the trained (assistant) tokens of a batch from :func:`_batch`."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["keep"]).logits
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch["labels"].flatten(),
                           ignore_index=IGNORE, reduction=reduction)


def _eval_loss(model: Any, examples: list[Example], batch_size: int, pad_id: int, device: Any) -> float | None:
    """Mean loss per trained token over ``examples`` (None when there are none)."""
    import torch

    if not examples:
        return None
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = _batch(examples[i:i + batch_size], pad_id, device)
            total += float(_loss(model, batch, "sum"))
            count += int((batch["labels"] != IGNORE).sum())
    model.train()
    return total / max(count, 1)


def _checkpoints(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("step-*") if (p / "trainer.pt").is_file()),
                  key=lambda p: int(p.name.removeprefix("step-")))


def _save_checkpoint(out: Path, step: int, state: dict[str, Any]) -> None:
    """Write ``checkpoints/step-N/trainer.pt`` under a temporary name and rename it; keep the last two."""
    import torch

    final = out / "checkpoints" / f"step-{step:06d}"
    tmp = out / "checkpoints" / f".tmp-step-{step:06d}-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(state, tmp / "trainer.pt")
    os.replace(tmp, final)
    for old in _checkpoints(out)[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def train(data: str | os.PathLike[str], model: str = "local", out: str | os.PathLike[str] = "adapter",
          config: TuneConfig | None = None, *, device: str = "auto", merge: bool = False,
          progress: bool = True, log: Any = print) -> dict[str, Any]:
    """Train a LoRA adapter on ``data`` (see the module docstring). Returns the training figures.

    Args:
        data: an OpenAI chat fine-tuning JSONL file.
        model: the base: ``local`` (bundled SmolLM2), ``local:PATH_OR_ID``, a folder or a hub id.
        out: the adapter folder to write (or the merged model folder with ``merge=True``).
        device: ``"auto"`` (CUDA when present, else the CPU) or a torch device string.
        progress: draw a progress bar with the loss on stderr.
        log: where the data report and the summary lines go (``None``: nowhere).
    """
    require("peft", "tune")
    require("transformers", "local")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = config or TuneConfig()
    say = log or (lambda *a, **k: None)
    out = Path(out)
    started = time.perf_counter()
    # 1. the base model's folder and tokenizer; the file checked and tokenized as the model will see it
    folder, label = resolve_base(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    report = read_examples(data, tokenizer, config.max_length)
    say(report.summary())
    if report.errors:
        raise DataError(f"{len(report.errors)} bad lines in {data} (first: line {report.errors[0][0]}: "
                        f"{report.errors[0][1]}); fix or remove them and run again")
    if not report.examples:
        raise DataError(f"{data} has no conversations to train on")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_idx, eval_idx = _split(len(report.examples), config.eval_fraction, config.seed)
    train_set = [report.examples[i] for i in train_idx]
    eval_set = [report.examples[i] for i in eval_idx]
    per_epoch = math.ceil(len(train_set) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch))
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, total // 20)
    run_key = hashlib.sha256(json.dumps([_file_sha256(data), folder, asdict(config) | {"checkpoint_every": 0}],
                                        sort_keys=True, default=str).encode()).hexdigest()[:16]

    # 2. the base weights in float32 (bfloat16 autocast on CUDA), LoRA layers from the seed
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    base: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)  # type: ignore[arg-type]
    base = base.to(device)
    torch.manual_seed(config.seed)
    n_layers = base.config.num_hidden_layers
    layers = list(range(n_layers - config.layers, n_layers)) if config.layers else None
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, bias="none",
                      target_modules=list(config.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM")
    net: Any = get_peft_model(base, lora)
    net.config.use_cache = False
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))

    # 3. resume from the last checkpoint of the same run, if there is one
    state: dict[str, Any] = {"step": 0, "losses": [], "seconds": 0.0, "cpu_seconds": 0.0, "eval_before": None}
    saved = _checkpoints(out)
    if saved:
        state = torch.load(saved[-1] / "trainer.pt", map_location=device, weights_only=False)
        if state["run_key"] != run_key:
            raise ValueError(f"{out} holds checkpoints of a different run (other data, base or settings). "
                             f"Pass another --out, or delete {out / 'checkpoints'} to start over.")
        net.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        say(f"resuming from {saved[-1]} (step {state['step']} of {total})")
    elif eval_set:
        state["eval_before"] = _eval_loss(net, eval_set, config.batch_size, pad_id, device)

    # 4. the steps: a seeded order per epoch, so step s always sees the same examples
    from tqdm.auto import tqdm

    orders: dict[int, list[int]] = {}
    bar = tqdm(total=total, initial=state["step"], desc="tune", unit="step", disable=not progress)
    net.train()
    t0, cpu0 = time.perf_counter(), time.process_time()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda"))
    for step in range(state["step"], total):
        epoch, within = divmod(step, per_epoch)
        if epoch not in orders:
            orders[epoch] = list(range(len(train_set)))
            random.Random(f"{config.seed}-{epoch}").shuffle(orders[epoch])
        chunk = [train_set[i] for i in orders[epoch][within * config.batch_size:(within + 1) * config.batch_size]]
        with autocast:
            loss = _loss(net, _batch(chunk, pad_id, device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        state["losses"].append(round(value, 5))
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        # 5. a checkpoint every N steps (and none needed after the last: the adapter is written then)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
            trainable = {k: v.detach().clone() for k, v in net.state_dict().items() if "lora_" in k}
            _save_checkpoint(out, step + 1, {
                **state, "step": step + 1, "run_key": run_key, "trainable": trainable,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "seconds": state["seconds"] + time.perf_counter() - t0,
                "cpu_seconds": state.get("cpu_seconds", 0.0) + time.process_time() - cpu0})
    bar.close()
    seconds = state["seconds"] + time.perf_counter() - t0
    cpu_seconds = state.get("cpu_seconds", 0.0) + time.process_time() - cpu0

    # 6. figures, then the adapter (or the merged model) and its model card
    eval_after = _eval_loss(net, eval_set, config.batch_size, pad_id, device)
    losses = state["losses"]
    tail = losses[-max(1, min(10, len(losses) // 5)):]
    figures: dict[str, Any] = {
        "base": label, "base_folder": folder, "data": str(data), "data_sha256": _file_sha256(data),
        **{f"data_{k}": v for k, v in report.figures().items()},
        "train_examples": len(train_set), "eval_examples": len(eval_set), "steps": total,
        "epochs": round(total / per_epoch, 2), "train_loss_first": losses[0] if losses else None,
        "train_loss_last": round(sum(tail) / len(tail), 4) if tail else None,
        "eval_loss_before": None if state["eval_before"] is None else round(state["eval_before"], 4),
        "eval_loss_after": None if eval_after is None else round(eval_after, 4),
        "train_minutes": round(seconds / 60, 2), "train_cpu_minutes": round(cpu_seconds / 60, 2),
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
        "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "config": asdict(config),
    }
    out.mkdir(parents=True, exist_ok=True)
    if merge:
        merged = net.merge_and_unload()
        merged.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    else:
        net.save_pretrained(out)
        figures["adapter_mb"] = round((out / "adapter_model.safetensors").stat().st_size / 2**20, 2)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    from plait.tune.card import model_card

    (out / "README.md").write_text(model_card(figures, merged=merge), encoding="utf-8")
    (out / "plait-tune.json").write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")
    say(f"trained {total} steps in {figures['train_minutes']} min; eval loss {figures['eval_loss_before']} -> "
        f"{figures['eval_loss_after']}; wrote {out}")
    return figures
