"""`run_test`: a convention's ingester and hooks, in this process (no engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from osa import _registry
from osa.authoring.validator import Reject
from osa.errors import OsaError
from osa.runtime.entrypoint import record_dir
from osa.testing.harness import run_hook, run_ingester

HookStatus = Literal["passed", "rejected", "error", "skipped"]


class TestError(OsaError):
    """`run_test` cannot run (the convention has no ingester)."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class HookOutcome:
    """One hook on one record."""

    hook_name: str
    status: HookStatus
    result: Any = None
    reason: str | None = None


@dataclass(frozen=True)
class RecordResult:
    """The hooks' outcomes on one record, in convention order."""

    source_id: str
    hooks: list[HookOutcome]

    @property
    def accepted(self) -> bool:
        """Every hook passed (or was skipped)."""
        return all(h.status in ("passed", "skipped") for h in self.hooks)


@dataclass(frozen=True)
class TestResult:
    """What `run_test` saw."""

    __test__ = False  # not a pytest test class

    convention_title: str
    ingester_name: str
    records: list[RecordResult]


def run_test(
    *,
    convention_info: _registry.ConventionInfo,
    limit: int | None = 1,
    config: dict[str, Any] | None = None,
) -> TestResult:
    """Pulls records with the convention's ingester and runs its hooks on each.

    Hooks run in list order; after the first rejection or error the rest are skipped.

    A record without files gets an empty file collection (never an error).

    Raises:
        TestError: the convention has no ingester.
    """
    ingester = convention_info.ingester_info
    if ingester is None:
        raise TestError(f'convention "{convention_info.title}" has no ingester')
    pulled = run_ingester(ingester.ingester_cls, limit=limit, config=config)
    results = []
    for record in pulled.records:
        outcomes: list[HookOutcome] = []
        stopped = False
        files = record_dir(pulled.files_dir, record.source_id)
        for fn in convention_info.hooks:
            name = getattr(fn, "__name__", str(fn))
            if stopped:
                outcomes.append(HookOutcome(name, "skipped"))
                continue
            try:
                value = run_hook(fn, meta=dict(record.metadata), files=files)
            except Reject as e:
                outcomes.append(HookOutcome(name, "rejected", reason=str(e)))
                stopped = True
            except Exception as e:
                outcomes.append(HookOutcome(name, "error", reason=f"{type(e).__name__}: {e}"))
                stopped = True
            else:
                outcomes.append(HookOutcome(name, "passed", result=value))
        results.append(RecordResult(record.source_id, outcomes))
    return TestResult(convention_info.title, pulled.ingester_name, results)
