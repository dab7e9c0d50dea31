"""Helpers for hook authors' tests.

`run_hook` (one hook, in process), `run_ingester` (an ingester's records, in process)
and `run_test` (both together). The whole convention through the real engine is
`osa test` (or `osa.local.LocalArchive`).
"""

from osa.testing.harness import IngesterResult, run_hook, run_ingester
from osa.testing.runner import HookOutcome, RecordResult, TestError, TestResult, run_test

__all__ = [
    "HookOutcome",
    "IngesterResult",
    "RecordResult",
    "TestError",
    "TestResult",
    "run_hook",
    "run_ingester",
    "run_test",
]
