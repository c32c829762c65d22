"""The model card (``README.md``) written next to a trained adapter or merged model."""

from __future__ import annotations

from typing import Any


def model_card(f: dict[str, Any], merged: bool = False) -> str:
    """Markdown with the YAML front matter the Hugging Face hub reads, then the training figures."""
    c = f["config"]
    what = "a merged model (the LoRA adapter folded into the base weights)" if merged else "a LoRA adapter (PEFT)"
    use = (f"plait ask --model local:{'THIS_FOLDER'} ..." if merged else
           f"plait ask --model {f['base'] if f['base'].startswith('local') else 'local:' + f['base']} "
           "--adapter THIS_FOLDER ...")
    rows = [
        ("base model", f"`{f['base']}` ({f['base_folder']})"),
        ("data", f"`{f['data']}` (sha256 {f['data_sha256'][:16]}...)"),
        ("conversations", f"{f['data_examples']} ({f['train_examples']} train, {f['eval_examples']} eval)"),
        ("tokens", f"{f['data_tokens']} in all, {f['data_trained_tokens']} trained on (assistant turns only)"),
        ("steps", f"{f['steps']} ({f['epochs']} epochs, batch {c['batch_size']})"),
        ("LoRA", f"rank {c['rank']}, alpha {c['alpha']}, on {', '.join(c['target_modules'])}"
                 + (f" of the last {c['layers']} layers" if c.get("layers") else "")),
        ("optimizer", f"AdamW, learning rate {c['learning_rate']}, linear warm-up and decay, seed {c['seed']}"),
        ("train loss", f"{f['train_loss_first']} first step -> {f['train_loss_last']} (mean of the last steps)"),
        ("eval loss", f"{f['eval_loss_before']} before -> {f['eval_loss_after']} after"),
        ("time", f"{f['train_minutes']} min training ({f.get('train_cpu_minutes')} CPU min; {f['total_minutes']} min "
                 f"in all) on {f['device']}, {f['threads']} threads, torch {f['torch']}"),
    ]
    if f.get("adapter_mb") is not None:
        rows.append(("adapter size", f"{f['adapter_mb']} MB"))
    rows += [(k, str(v)) for k, v in (c.get("extra") or {}).items()]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
library_name: {'transformers' if merged else 'peft'}
base_model: {f['base_folder']}
tags: [plait, lora, sft]
---

# Fine-tuned with `plait tune`

This folder is {what}, trained with `plait tune` on `{f['data']}`.

| | |
|---|---|
{table}

Use it: `{use}`, or in Python
`chat_model_from_spec("local+adapter:THIS_FOLDER")`; with peft:
`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), "THIS_FOLDER")`.
"""
