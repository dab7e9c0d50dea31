"""Shared fixtures of the osa-py test suite (run against the installed wheel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


#: A small CIF file: the sample convention accepts records that carry one.
CIF = "data_demo\n_cell.length_a 10\n" + "ATOM x\n" * 200


@pytest.fixture
def records(tmp_path: Path) -> list[dict[str, Any]]:
    """Three records of the sample convention: one accepted, two rejected."""
    good = tmp_path / "files" / "good"
    good.mkdir(parents=True)
    (good / "model.cif").write_text(CIF)
    no_cif = tmp_path / "files" / "no-cif"
    no_cif.mkdir()
    (no_cif / "model.pdb").write_text("ATOM\n")

    def meta(pdb_id: str, resolution: float) -> dict:
        return {
            "pdb_id": pdb_id,
            "title": f"structure {pdb_id}",
            "resolution": resolution,
            "deposition_date": "2024-01-02",
            "molecular_weight": 40.5,
            "chain_count": 2,
        }

    return [
        {"id": "good", "metadata": meta("1AAA", 1.9), "files": good},
        {"id": "coarse", "metadata": meta("2BBB", 4.8), "files": good},
        {"id": "no-cif", "metadata": meta("3CCC", 2.0), "files": no_cif},
    ]


def write_records(records: list[dict[str, Any]], directory: Path) -> tuple[Path, Path]:
    """`records` as `osa test --records FILE --files DIR` takes them: the JSON-lines
    file and the directory of each record's files (by record id)."""
    jsonl = directory / "records.jsonl"
    lines = [json.dumps({"id": r["id"], "metadata": r["metadata"]}) for r in records]
    jsonl.write_text("\n".join(lines) + "\n")
    files = directory / "by-id"
    files.mkdir(exist_ok=True)
    for r in records:
        (files / r["id"]).symlink_to(r["files"], target_is_directory=True)
    return jsonl, files
