"""Shared test setup: an isolated data directory and offline model hubs."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test run gets its own data directory, so tests never touch the user's store.
os.environ["PLAIT_HOME"] = tempfile.mkdtemp(prefix="plait-test-home-")
os.environ.pop("PLAIT_TRACE", None)
