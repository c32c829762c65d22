"""The console tracer: prints the tree of steps of each top-level run, with timings.

Example::

    from plait.tracing import ConsoleTracer
    chain.with_tracing(ConsoleTracer(verbose=True)).invoke({"question": "hi"})
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from plait.tracing import Run, Tracer


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConsoleTracer(Tracer):
    """Prints the tree of steps of each top-level run with timings (and inputs/outputs if verbose).

    A run whose parent this tracer never saw starts a tree of its own. Runs of concurrent trees
    (a batch, threads) are kept apart: each tree is printed, whole, when its top run ends.
    """

    def __init__(self, verbose: bool = False, file: TextIO | None = None) -> None:
        self.verbose = verbose
        self.file = file
        self._lock = threading.Lock()
        self._root_of: dict[str, str] = {}  # run id -> the run id of the top of its tree
        self._done: dict[str, list[Run]] = {}  # top run id -> the runs of its tree that ended

    def on_start(self, run: Run) -> None:
        with self._lock:
            root = self._root_of.get(run.parent_id) if run.parent_id is not None else None
            if root is None:
                root = run.run_id
                self._done[root] = []
            self._root_of[run.run_id] = root

    def _finish(self, run: Run) -> None:
        with self._lock:
            root = self._root_of.pop(run.run_id, None)
            if root is None:  # started before this tracer listened
                return
            if root != run.run_id:
                self._done.get(root, []).append(run)
                return
            runs = self._done.pop(root)
        self._print_tree(run, runs)

    on_end = _finish
    on_error = _finish

    def _print_tree(self, root: Run, runs: list[Run]) -> None:
        by_parent: dict[str | None, list[Run]] = {}
        for r in runs:
            by_parent.setdefault(r.parent_id, []).append(r)
        lines: list[str] = []

        def show(r: Run, indent: int) -> None:
            pad = "  " * indent
            status = "error: " + _short(r.error, 200) if r.error is not None else "ok"
            lines.append(f"{pad}[{r.name}] {r.elapsed_ms:.2f} ms {status}")
            if self.verbose:
                lines.append(f"{pad}  in:  {_short(r.input)}")
                if r.error is None:
                    lines.append(f"{pad}  out: {_short(r.output)}")
            for child in sorted(by_parent.get(r.run_id, []), key=lambda c: c.start):
                show(child, indent + 1)

        show(root, 0)
        print("\n".join(lines), file=self.file or sys.stderr, flush=True)  # one write: trees never interleave
