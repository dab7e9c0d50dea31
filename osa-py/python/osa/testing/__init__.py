"""Helpers for hook authors' unit tests."""

from osa.testing.harness import run_hook

__all__ = ["run_hook"]
