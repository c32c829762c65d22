"""Teach the bundled SmolLM2-135M to cite: LoRA on passages from SciFact's corpus, then the RAG benchmark.

1. A training set from the text of SciFact's corpus only (never its claims or qrels): for a
   passage's sentence, a question or claim made from it by a template (the sentence as a claim, "Is it
   true that ...?", "What is known about <phrase>?"), the passages the RAG chain would show for that
   question (hybrid retrieval over the same index, numbered ``[1]..[k]`` and cut exactly as
   :class:`plait.chains.rag.RAGChain` shows them; the source passage is put in when retrieval missed
   it), and an answer that states the sentence and cites it, ``... [n].`` Some questions draw on two
   passages (two sentences, two markers); about 20% have passages that do not hold the answer, and
   the answer is the chain's "I don't know: the passages do not say." The prompt is the chain's own
   system and user prompt. Deterministic from ``--seed``.
2. ``plait.tune`` trains a LoRA adapter on it (skipped with ``--adapter DIR``), run with nice.
3. ``benchmarks/rag_scifact.py`` runs, unchanged, on the first ``--limit`` test claims with
   ``--model local`` and ``--model local+adapter:DIR``.

Last line JSON: base/tuned citation precision and recall, ``tuned_marker_rate`` (answers where the
model wrote valid ``[n]`` markers itself), ``train_minutes``, ``adapter_mb``.

Run: nice -n 10 python benchmarks/finetune_rag.py --limit 50
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DONT_KNOW = "I don't know: the passages do not say."
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]+")
_STOP = set("""a an the of in on at to for from by with and or but is are was were be been being this that these
those it its as we our their there than then which who whom whose what when where how not no nor also into
over under between among during after before about such can could may might will would should has have had
do does did using used use based both each other more most less only all any some very here""".split())


def sentences(text: str, visible: int, skip: int = 0) -> list[str]:
    """The whole sentences of ``text`` inside the first ``visible`` characters (past the first ``skip``,
    the title), 8 to 35 words long."""
    out, pos = [], 0
    for s in _SENTENCE.split(text):
        start = text.find(s, pos)
        pos = start + len(s)
        if start >= skip and pos <= visible - 8 and 8 <= len(s.split()) <= 35 and s.endswith("."):
            out.append(s)
    return out


def phrase(sentence: str, rng: random.Random) -> str:
    """A run of 2-5 content words from the sentence (what a question can be about)."""
    words = sentence.rstrip(".").split()
    runs, run = [], []
    for w in words:
        if _WORD.fullmatch(w.strip(",;:()")) and w.lower().strip(",;:()") not in _STOP:
            run.append(w.strip(",;:()"))
        else:
            if len(run) >= 2:
                runs.append(run)
            run = []
    if len(run) >= 2:
        runs.append(run)
    if not runs:
        return " ".join(words[:4])
    best = max(runs, key=len)
    return " ".join(best[:5])


def ask_about(sentence: str, rng: random.Random) -> str:
    body = sentence.rstrip(".")
    kind = rng.random()
    if kind < 0.4:  # a claim, like the benchmark's inputs: the sentence's first clause, or most of it
        words = body.split(",")[0].split()
        return " ".join(words[: max(6, len(words) * 2 // 3)]) + "."
    if kind < 0.55:
        return f"Is it true that {body[0].lower() + body[1:]}?"
    if kind < 0.8:
        return f"What is known about {phrase(sentence, rng)}?"
    return f"What do the passages say about {phrase(sentence, rng)}?"


def state(sentence: str, n: int) -> str:
    return f"{sentence.rstrip('.')} [{n}]."


def build_training_set(corpus: dict, store, count: int, seed: int, k: int = 3, no_answer: float = 0.2) -> list[dict]:
    """Conversations in OpenAI's fine-tuning format (see the module docstring)."""
    from plait.chains.citations import Source, format_passages
    from plait.chains.rag import SYSTEM_PROMPT, USER_PROMPT

    rng = random.Random(seed)
    retriever = store.as_retriever("hybrid", k=k)
    ids = sorted(corpus)
    by_id = {}

    def doc(i: str):
        from plait.messages import Document

        if i not in by_id:
            row = corpus[i]
            text = f"{row['title']}. {row['text']}".strip()
            by_id[i] = Document(content=text, id=i, metadata={"source": f"scifact:{i}"})
        return by_id[i]

    def visible(d) -> str:
        return " ".join(d.content.split())

    def body(d) -> list[str]:  # the passage's visible sentences, not its title
        return sentences(visible(d), 400, len(corpus[d.id]["title"]) + 1)

    rows = []
    while len(rows) < count:
        kind = rng.random()
        first = doc(rng.choice(ids))
        found = body(first)
        if not found:
            continue
        s1 = rng.choice(found)
        if kind < no_answer:  # no answer: passages retrieved for another passage's question
            question = ask_about(s1, rng)
            shown = [doc(rng.choice(ids)) for _ in range(k)]
            if any(d.id == first.id for d in shown):
                continue
            answer = DONT_KNOW
        elif kind < no_answer + 0.15:  # two passages: the question's second half is about a retrieved neighbour
            shown = [d for d in retriever.invoke(s1) if d.id != first.id][: k - 1]
            second = next((d for d in shown if body(d)), None)
            if second is None:
                continue
            s2 = rng.choice(body(second))
            question = f"What is known about {phrase(s1, rng)} and about {phrase(s2, rng)}?"
            shown = [first, *shown]
            rng.shuffle(shown)
            n1, n2 = shown.index(first) + 1, shown.index(second) + 1
            answer = f"{state(s1, n1)} {state(s2, n2)}"
        else:
            question = ask_about(s1, rng)
            shown = list(retriever.invoke(question))[:k]
            if all(d.id != first.id for d in shown):
                shown[rng.randrange(len(shown))] = first
            answer = state(s1, [d.id for d in shown].index(first.id) + 1)
        sources = [Source.from_document(i, d) for i, d in enumerate(shown, 1)]
        user = USER_PROMPT.format(passages=format_passages(sources, 400), question=question)
        rows.append({"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                  {"role": "user", "content": user},
                                  {"role": "assistant", "content": answer}]})
    return rows


def rag(model: str, args: argparse.Namespace) -> dict:
    """benchmarks/rag_scifact.py on one model; its last line (JSON)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "rag_scifact.py"), "--limit", str(args.limit),
           "--model", model, "--k", str(args.k), "--max-tokens", str(args.max_tokens), "--data", args.data]
    if args.index_dir:
        cmd += ["--index-dir", args.index_dir]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(done.stdout, file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--limit", type=int, default=50, help="first N test claims for the RAG evaluation")
    parser.add_argument("--adapter", default=None, help="evaluate this adapter instead of training one")
    parser.add_argument("--out", default=None, help="where the adapter goes (default: <data dir>/bench/finetune-cite)")
    parser.add_argument("--examples", type=int, default=400, help="training conversations to build")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: one epoch)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--layers", type=int, default=None, help="LoRA on the last N layers only")
    parser.add_argument("--no-answer", type=float, default=0.2,
                        help="share of questions whose passages do not hold the answer (default: 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--index-dir", default=None)
    parser.add_argument("--skip-eval", action="store_true", help="train only")
    parser.add_argument("--base-result", default=None,
                        help="a file holding the last JSON line of an earlier rag_scifact.py run of the base model "
                             "with the same --limit and --k, used instead of running it again")
    args = parser.parse_args()

    from rag_scifact import build_index, load_scifact

    from plait.defaults import data_dir
    from plait.retrievers.chroma import ChromaStore

    adapter = Path(args.adapter) if args.adapter else None
    figures: dict = {}
    if adapter is None:
        from plait.tune.lora import TuneConfig, train

        corpus, _, _ = load_scifact(Path(args.data))  # the corpus only is read below
        index_dir = Path(args.index_dir) if args.index_dir else data_dir() / "bench" / "scifact-index"
        store = ChromaStore("scifact", path=index_dir)
        build_index(store, corpus)
        adapter = Path(args.out) if args.out else data_dir() / "bench" / "finetune-cite"
        adapter.mkdir(parents=True, exist_ok=True)
        data = adapter.parent / f"{adapter.name}-train.jsonl"
        if not data.exists():
            rows = build_training_set(corpus, store, args.examples, args.seed, args.k, args.no_answer)
            data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        config = TuneConfig(max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                            rank=args.rank, alpha=2 * args.rank, layers=args.layers, seed=args.seed,
                            eval_fraction=0.05, checkpoint_every=10, extra={"training set": "benchmarks/finetune_rag.py "
                                                        f"(SciFact corpus text only, {args.examples} built, "
                                                        f"{args.no_answer:.0%} without an answer, seed {args.seed})"})
        figures = train(data, "local", adapter, config, log=lambda *a: print(*a, file=sys.stderr))
    else:
        figures = json.loads((adapter / "plait-tune.json").read_text())
    adapter_mb = round((adapter / "adapter_model.safetensors").stat().st_size / 2**20, 2)
    result = {"claims": args.limit, "train_minutes": figures.get("train_minutes"), "adapter_mb": adapter_mb,
              "train_examples": figures.get("train_examples"), "steps": figures.get("steps"),
              "eval_loss_before": figures.get("eval_loss_before"), "eval_loss_after": figures.get("eval_loss_after")}
    if not args.skip_eval:
        if args.base_result:
            base = json.loads(Path(args.base_result).read_text().strip().splitlines()[-1])
            if base["claims"] != args.limit or base["k"] != args.k or base["model"] != "local":
                raise SystemExit(f"{args.base_result} is a run with other settings: {base['claims']} claims, k={base['k']}")
        else:
            base = rag("local", args)
        tuned = rag(f"local+adapter:{adapter}", args)
        result.update({
            "base_citation_precision": base["citation_precision"], "tuned_citation_precision": tuned["citation_precision"],
            "base_citation_recall": base["citation_recall"], "tuned_citation_recall": tuned["citation_recall"],
            "base_marker_rate": round(base["citations_by_model"] / base["claims"], 4),
            "tuned_marker_rate": round(tuned["citations_by_model"] / tuned["claims"], 4),
            "retrieval_recall_at_k": base["retrieval_recall_at_k"],
            "baseline_cite_top1_precision": base["baseline_cite_top1_precision"],
            "base_tok_s": base["tok_s"], "tuned_tok_s": tuned["tok_s"]})
        print(f"{'':24}{'base':>8}{'tuned':>8}")
        for key in ("citation_precision", "citation_recall", "marker_rate"):
            print(f"{key:24}{result['base_' + key]:>8.3f}{result['tuned_' + key]:>8.3f}")
        print(f"trained {result['train_minutes']} min, adapter {adapter_mb} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
