"""``plait tune DATA.jsonl``: fine-tune a model on chat examples (OpenAI's fine-tuning format).

``--model local`` (or ``local:PATH_OR_ID``) trains a LoRA adapter here into ``--out DIR``
(``--merge``: a merged model folder instead); a killed run started again with the same command
resumes from its last checkpoint. ``--model openai:MODEL`` uploads the file and starts and follows a
fine-tuning job on an OpenAI-compatible server. The file is checked first (bad lines by number,
token counts, what is trained on); ``--check`` stops there.

Then: ``plait ask --model local --adapter DIR "..."`` (or ``--model local+adapter:DIR``).
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="training file: one {\"messages\": [...]} JSON object per line")
    parser.add_argument("--model", default="local",
                        help="base model: 'local' (bundled SmolLM2; default), 'local:PATH_OR_ID', or 'openai:MODEL'")
    parser.add_argument("--out", default=None, help="folder for the adapter (or merged model); needed for local models")
    parser.add_argument("--check", action="store_true", help="only check the file and count tokens")
    local = parser.add_argument_group("local training (LoRA)")
    local.add_argument("--merge", action="store_true", help="write a merged model folder instead of an adapter")
    local.add_argument("--epochs", type=float, default=1.0, help="passes over the training examples (default: 1)")
    local.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    local.add_argument("--batch-size", type=int, default=4)
    local.add_argument("--lr", type=float, default=2e-4, help="learning rate (default: 2e-4)")
    local.add_argument("--rank", type=int, default=16, help="LoRA rank (default: 16)")
    local.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default: 2 x rank)")
    local.add_argument("--layers", type=int, default=None, help="LoRA on the last N layers only (faster)")
    local.add_argument("--eval-fraction", type=float, default=0.1, help="share held out for the eval loss")
    local.add_argument("--max-length", type=int, default=1024, help="conversations are cut to this many tokens")
    local.add_argument("--seed", type=int, default=0)
    local.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default: 50)")
    local.add_argument("--device", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda'")
    local.add_argument("--no-progress", action="store_true", help="no progress bar")
    remote = parser.add_argument_group("remote job (--model openai:MODEL)")
    remote.add_argument("--base-url", default=None, help="OpenAI-compatible server (default: $OPENAI_BASE_URL)")
    remote.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY)")
    remote.add_argument("--suffix", default=None, help="a name part for the fine-tuned model")
    remote.add_argument("--no-follow", action="store_true", help="start the job and return its id")
    remote.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the job (default: 10)")


def run(args: argparse.Namespace) -> int:
    from plait.commands._checks import CLIError, UsageError

    kind = args.model.partition(":")[0]
    if kind not in ("local", "openai"):
        raise UsageError(f"cannot fine-tune {args.model!r}: use --model local, local:PATH_OR_ID or openai:MODEL")
    if args.check or kind == "openai":
        from plait.tune.data import read_examples

        tokenizer = None
        if kind == "local":
            from transformers import AutoTokenizer

            from plait.tune.lora import resolve_base

            tokenizer = AutoTokenizer.from_pretrained(resolve_base(args.model)[0])
        report = read_examples(args.data, tokenizer, args.max_length)
        print(report.summary(), file=sys.stderr)
        if report.errors:
            raise CLIError(f"{len(report.errors)} bad lines in {args.data}; fix or remove them and run again")
        if args.check:
            return 0
    if kind == "openai":
        from plait.tune.remote import run_job

        job = run_job(args.data, args.model.partition(":")[2], base_url=args.base_url, api_key=args.api_key,
                      suffix=args.suffix, follow=not args.no_follow, seed=args.seed, poll_seconds=args.poll,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
        print(job.get("fine_tuned_model") or job["id"])
        return 0 if job.get("status") in ("succeeded", "queued", "running", "validating_files") else 1
    if not args.out:
        raise UsageError("--out DIR is needed: the folder the adapter is written to")
    from plait.tune import tune

    tune(args.data, args.model, args.out, merge=args.merge, epochs=args.epochs, max_steps=args.steps,
         batch_size=args.batch_size, learning_rate=args.lr, rank=args.rank, alpha=args.alpha or 2 * args.rank,
         layers=args.layers, eval_fraction=args.eval_fraction, max_length=args.max_length, seed=args.seed,
         checkpoint_every=args.checkpoint_every, device=args.device, progress=not args.no_progress,
         log=lambda line: print(line, file=sys.stderr, flush=True))
    print(args.out)
    return 0
