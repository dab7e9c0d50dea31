"""Shared fixtures of the osa-py test suite (run against the installed wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from osa import _registry

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Every test starts with an empty registry; the previous content is restored after."""
    saved = (list(_registry._hooks), list(_registry._conventions), list(_registry._ingesters))
    _registry.clear()
    yield
    _registry.clear()
    _registry._hooks.extend(saved[0])
    _registry._conventions.extend(saved[1])
    _registry._ingesters.extend(saved[2])


def script(name: str) -> str:
    """Path of a console script installed next to the test interpreter."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    assert found, f"console script {name} is not installed"
    return found


def run(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a command with the test environment plus `env`; captures text output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OSA_")}
    full_env.update(env or {})
    return subprocess.run(
        args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture
def sample_installed() -> None:
    """Skips nothing: fails clearly when the sample convention package is not installed."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="osa.conventions")}
    assert {"sample", "sample_runtime"} <= names, (
        "install osa-py/tests/sample_convention into the test venv "
        "(scripts/python-tests.sh does it)"
    )
