"""A pytest plugin for running the published SDK's test suite against OSA's wheel.

`scripts/published-sdk-tests.sh` loads it (`-p known_gaps`) into a run of the tests
shipped in the published `osa-py` sdist. It reads `known-gaps.txt` next to it:

    exclude tests/test_ui.py         # reason
    absent  tests/test_login.py      # reason
    xfail   tests/test_x.py::TestY   # reason

An `exclude` line names a test file, class or test of private modules of the published
package (its renderer, process helpers) or of a design OSA replaces (its Docker Compose
`osa start`): not run.
An `absent` line names a test file of a public command OSA has not built yet (it
cannot be imported): not collected, and counted as a gap. An `xfail` line names a
test, class or file of public behaviour OSA does not match yet; the mark is strict, so
a listed test that passes fails the run and its line must go. Every line carries its
reason after `#`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GAPS = Path(__file__).with_name("known-gaps.txt")


def _entries() -> dict[str, dict[str, str]]:
    kinds: dict[str, dict[str, str]] = {"exclude": {}, "absent": {}, "xfail": {}}
    for number, raw in enumerate(GAPS.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, reason = line.partition("#")
        parts = entry.split()
        if len(parts) != 2 or parts[0] not in kinds or not reason.strip():
            raise pytest.UsageError(f"{GAPS.name} line {number}: want `kind target # reason`")
        kinds[parts[0]][parts[1]] = reason.strip()
    return kinds


ENTRIES = _entries()
NOT_COLLECTED = {**ENTRIES["exclude"], **ENTRIES["absent"]}


def _listed(nodeid: str, targets: dict[str, str]) -> str | None:
    for target, reason in targets.items():
        if nodeid == target or nodeid.startswith(target + "::"):
            return reason
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skips collecting the excluded and absent files."""
    relative = collection_path.relative_to(config.rootpath).as_posix()
    return True if relative in NOT_COLLECTED else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects the excluded tests and marks the known gaps as strict expected failures."""
    kept, dropped = [], []
    for item in items:
        if _listed(item.nodeid, ENTRIES["exclude"]) is not None:
            dropped.append(item)
            continue
        reason = _listed(item.nodeid, ENTRIES["xfail"])
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Reports how much of the suite is listed."""
    terminalreporter.write_line(
        f"published suite: {len(ENTRIES['exclude'])} exclusions "
        "(private modules, replaced designs), "
        f"{len(ENTRIES['absent'])} files of commands not built, "
        f"{len(ENTRIES['xfail'])} known gaps (xfail) listed in {GAPS.name}"
    )
