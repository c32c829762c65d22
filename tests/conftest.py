"""Shared test setup: an isolated data directory and offline model hubs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test run gets its own data directory, so tests never touch the user's store. It holds the
# prepared local model (~670 MB), so it goes when the run ends: 332 runs left behind filled a 252 GB disk.
# A killed run cannot clean up after itself: the next run removes homes left for more than 12 hours.
for _old in Path(tempfile.gettempdir()).glob("plait-test-home-*"):
    try:
        stale = time.time() - _old.stat().st_mtime > 12 * 3600
    except OSError:  # another run removed it meanwhile
        continue
    if stale:
        shutil.rmtree(_old, ignore_errors=True)
_HOME = tempfile.mkdtemp(prefix="plait-test-home-")
os.environ["PLAIT_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.pop("PLAIT_TRACE", None)
