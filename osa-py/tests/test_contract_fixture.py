"""The committed contract fixture (tests/fixtures/contract) is what osa-run-hook writes.

The engine's tests read the same files with `osa_core::contract::read_outcomes`, so the
SDK and the engine are held to one contract. Set OSA_UPDATE_CONTRACT_FIXTURE=1 to
regenerate the outputs and expected.json after a deliberate change.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import TESTS, run, script

pytestmark = pytest.mark.usefixtures("sample_installed")

FIXTURE = TESTS / "fixtures" / "contract"
OUTPUTS = ("features.jsonl", "rejections.jsonl", "errors.jsonl")
UPDATE = os.environ.get("OSA_UPDATE_CONTRACT_FIXTURE") == "1"


def _feature_spec() -> dict[str, Any]:
    probe = (
        "import json, osa._registry as r, osa_sample.runtime_hooks as m\n"
        "print(json.dumps(r.find_hook(m.typed_rows).feature()))\n"
    )
    result = run([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    spec: dict[str, Any] = json.loads(result.stdout)
    return spec


def _batch_ids() -> list[str]:
    ids = []
    for line in (FIXTURE / "in" / "records.jsonl").read_text().splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("id"), str):
            ids.append(value["id"])
    return ids


def _expected(out: Path) -> dict[str, Any]:
    outcomes: dict[str, Any] = {}
    for line in (out / "features.jsonl").read_text().splitlines():
        obj = json.loads(line)
        outcomes[obj["id"]] = {"status": "passed", "rows": len(obj["features"])}
    for line in (out / "rejections.jsonl").read_text().splitlines():
        obj = json.loads(line)
        outcomes[obj["id"]] = {"status": "rejected", "reason": obj["reason"]}
    for line in (out / "errors.jsonl").read_text().splitlines():
        obj = json.loads(line)
        outcomes[obj["id"]] = {
            "status": "errored",
            "error": obj["error"],
            "retryable": obj["retryable"],
        }
    batch = _batch_ids()
    return {
        "hook": "typed_rows",
        "batch": batch,
        "outcomes": {k: outcomes[k] for k in sorted(outcomes)},
        "stray_ids": sorted(k for k in outcomes if k not in batch),
    }


def test_fixture_matches_a_fresh_run(tmp_path):
    out = tmp_path / "out"
    env = {
        "OSA_IN": str(FIXTURE / "in"),
        "OSA_OUT": str(out),
        "OSA_FILES": str(FIXTURE / "files"),
        "OSA_HOOK_NAME": "typed_rows",
    }
    result = run([script("osa-run-hook")], env=env)
    assert result.returncode == 0, result.stderr
    spec = _feature_spec()
    expected = _expected(out)
    if UPDATE:
        shutil.rmtree(FIXTURE / "out", ignore_errors=True)
        shutil.copytree(out, FIXTURE / "out")
        (FIXTURE / "feature.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
        (FIXTURE / "expected.json").write_text(
            json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
        )
    hint = "regenerate with OSA_UPDATE_CONTRACT_FIXTURE=1 if the change is deliberate"
    for name in OUTPUTS:
        assert (out / name).read_text() == (FIXTURE / "out" / name).read_text(), (name, hint)
    assert json.loads((FIXTURE / "feature.json").read_text()) == spec, hint
    assert json.loads((FIXTURE / "expected.json").read_text()) == expected, hint


def test_fixture_covers_every_outcome_kind():
    expected = json.loads((FIXTURE / "expected.json").read_text())
    statuses = {o["status"] for o in expected["outcomes"].values()}
    assert statuses == {"passed", "rejected", "errored"}
    assert set(expected["batch"]) <= set(expected["outcomes"])
    assert expected["stray_ids"] == ["line-10", "line-11", "line-12"]
    assert expected["outcomes"]["validator-like"] == {"status": "passed", "rows": 0}
