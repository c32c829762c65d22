"""Helpers for running LangChain's standard suites (``langchain-tests``) on plait's classes.

- :class:`ModelLimits`: a suite class lists, in ``model_limits``, the tests the 135M local model
  fails for want of skill (not for a missing method or a protocol gap), with the cause; they run and
  are reported as xfail (an unexpected pass shows as XPASS). docs/interop.md lists them.
- :func:`quick`: a subclass that keeps only a few of a suite's tests, for the default test run; the
  whole suite is marked ``slow``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

# The tests of ChatModelIntegrationTests the bundled SmolLM2-135M fails, and why (in process and served).
AUTO_TOOL = ("with tool_choice='auto' it answers the weather question in text instead of calling get_weather "
             "(forced tool choices pass: test_tool_calling, test_tool_choice)")
SMOLLM2_LIMITS = {
    "test_agent_loop": AUTO_TOOL,
    "test_json_mode": ("json_mode sends no schema (LangChain's contract), only the prompt's words; the model "
                       "writes a JSON object with 'setup' alone and closes it"),
}


class ModelLimits:
    """Mixin: the tests named in ``model_limits`` (test name, or name with its parameters) are xfail."""

    model_limits: ClassVar[dict[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _xfail_model_limits(self, request: pytest.FixtureRequest) -> None:
        node: Any = request.node
        reason = self.model_limits.get(node.name) or self.model_limits.get(node.originalname)
        if reason:
            request.applymarker(pytest.mark.xfail(reason=f"135M model: {reason}", strict=False))


def quick(*keep: str) -> Any:
    """Class decorator: run only the tests named in ``keep`` (a name, or a name with its parameters like
    ``test_stream[model0]``); tests/interop/conftest.py deselects the others."""
    def decorate(cls: type) -> type:
        cls.quick_tests = frozenset(keep)  # type: ignore[attr-defined]
        return cls

    return decorate
