"""`osa emit`, `osa progress` and `osa reject`: the helpers of shell hooks."""

from __future__ import annotations

import json

import pytest

from conftest import run, script
from osa.cli.main import main as cli_main


@pytest.fixture
def out(tmp_path, monkeypatch):
    directory = tmp_path / "nested" / "out"
    monkeypatch.setenv("OSA_OUT", str(directory))
    return directory


def test_emit_writes_features_json(out):
    assert cli_main(["emit", '{"score": 1.5, "tags": ["a"]}']) == 0
    text = (out / "features.json").read_text()
    assert text == json.dumps({"score": 1.5, "tags": ["a"]}, indent=2)
    # A later emit replaces it; an array is accepted too.
    assert cli_main(["emit", "[1, 2]"]) == 0
    assert json.loads((out / "features.json").read_text()) == [1, 2]


def test_emit_refuses_what_is_not_an_object_or_array(out, capsys):
    assert cli_main(["emit", "not json"]) == 1
    assert "error: DATA is not JSON" in capsys.readouterr().err
    assert cli_main(["emit", "3"]) == 1
    assert "error: DATA must be a JSON object or array, got int" in capsys.readouterr().err
    assert not (out / "features.json").exists()


def test_progress_and_reject_append_to_progress_jsonl(out):
    assert cli_main(["progress"]) == 0
    assert cli_main(["progress", "--step", "parse", "--status", "done", "--message", "ok"]) == 0
    assert cli_main(["reject", "no CIF file"]) == 0
    lines = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert lines == [
        {"status": "info"},
        {"status": "done", "step": "parse", "message": "ok"},
        {"status": "rejected", "message": "no CIF file"},
    ]


def test_reject_runs_as_a_console_script(tmp_path):
    proc = run([script("osa"), "reject", "bad input"], env={"OSA_OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "progress.jsonl").read_text()) == {
        "status": "rejected",
        "message": "bad input",
    }
