"""Shared test setup: an isolated data directory and offline model hubs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test run gets its own data directory, so tests never touch the user's store. It holds the
# prepared local model (~670 MB), so it goes when the run ends: 332 runs left behind filled a 252 GB disk.
_HOME = tempfile.mkdtemp(prefix="plait-test-home-")
os.environ["PLAIT_HOME"] = _HOME
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.pop("PLAIT_TRACE", None)
