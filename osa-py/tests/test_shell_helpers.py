"""`osa emit`, `osa progress`, `osa reject` and `osa meta`: the container helpers."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from conftest import run, script
from osa import Record, Schema, convention, hook
from osa.cli._runtime_commands import (
    emit_command,
    meta_command,
    progress_command,
    reject_command,
)
from osa.cli.main import main as cli_main
from osa.errors import OsaError


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


@pytest.mark.parametrize(
    ("data", "written"),
    [
        ("42", "42"),
        (" 7 ", "7"),
        ("1.5", "1.5"),
        ('"hi"', '"hi"'),
        ('"é"', '"\\u00e9"'),
        ("true", "true"),
        ("null", "null"),
        ("NaN", "NaN"),
        ("1e400", "Infinity"),
    ],
)
def test_emit_writes_a_scalar_as_the_published_cli_does(out, data, written):
    assert cli_main(["emit", data]) == 0
    assert (out / "features.json").read_text() == written


def test_emit_refuses_what_is_not_json(out, capsys):
    assert cli_main(["emit", "[1]"]) == 0
    assert cli_main(["emit", "not json"]) == 1
    assert "error: DATA is not JSON" in capsys.readouterr().err
    assert cli_main(["emit", ""]) == 1
    # The earlier file is left as it was.
    assert (out / "features.json").read_text() == "[\n  1\n]"


def test_emit_creates_the_output_directory_even_for_bad_json(out):
    with pytest.raises(OsaError, match="DATA is not JSON"):
        emit_command("{")
    assert out.is_dir()
    assert not (out / "features.json").exists()


def test_emit_runs_as_a_console_script(tmp_path):
    proc = run([script("osa"), "emit", "42"], env={"OSA_OUT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "features.json").read_text() == "42"
    proc = run([script("osa"), "emit", "{"], env={"OSA_OUT": str(tmp_path)})
    assert proc.returncode == 1
    assert "error: DATA is not JSON" in proc.stderr


def test_helper_functions_at_the_published_module_path(out):
    emit_command('{"atom_count": 42}')
    assert json.loads((out / "features.json").read_text()) == {"atom_count": 42}
    progress_command(step="Loading", status="running", message="Starting...")
    progress_command(status="done")
    reject_command(reason="Bad data format")
    lines = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert lines == [
        {"status": "running", "step": "Loading", "message": "Starting..."},
        {"status": "done"},
        {"status": "rejected", "message": "Bad data format"},
    ]
    with pytest.raises(TypeError):
        progress_command("Loading", "running")  # type: ignore[misc]


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


class Sample(Schema):
    __schema_id__ = "sample-schema"

    organism: str


class Pocket(BaseModel):
    pocket_id: str
    score: float


def test_meta_prints_the_registry_indented(capsys):
    @hook
    def detect(record: Record[Sample]) -> list[Pocket]:
        return []

    text = meta_command()
    assert text.startswith('{\n  "hooks": [\n    {\n      "name": "detect",')
    data = json.loads(text)
    assert [h["name"] for h in data["hooks"]] == ["detect"]
    assert [c["name"] for c in data["hooks"][0]["columns"]] == ["pocket_id", "score"]
    assert data["conventions"] == []
    assert list(data["schemas"]) == ["Sample"]

    assert cli_main(["meta"]) == 0
    assert capsys.readouterr().out == text + "\n"


def test_meta_refuses_an_output_field_that_cannot_be_a_column(capsys):
    class Bad(BaseModel):
        BadName: int

    @hook
    def bad(record: Record[Sample]) -> Bad:
        return Bad(BadName=1)

    assert cli_main(["meta"]) == 1
    assert "BadName" in capsys.readouterr().err


def test_meta_loads_no_entry_point(sample_installed):
    # The sample convention package is installed, yet `osa meta` lists nothing: like the
    # published command, it shows only what the process itself registered.
    proc = run([script("osa"), "meta"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '{\n  "hooks": [],\n  "conventions": [],\n  "schemas": {}\n}\n'


def test_meta_shows_a_convention_registered_in_process():
    @hook
    def check(record: Record[Sample]) -> None: ...

    def not_a_hook(record: Record[Sample]) -> None: ...

    convention(
        title="Samples",
        description="d",
        version="1.2.0",
        schema=Sample,
        files={"accepted_types": [".x"], "extensions": [".y"]},
        hooks=[check, not_a_hook],
        purpose="p",
        examples=[],
    )
    data = json.loads(meta_command())
    assert data["conventions"] == [
        {
            "title": "Samples",
            "description": "d",
            "version": "1.2.0",
            "record_schema": "Sample",
            "file_requirements": {"accepted_types": [".x"], "extensions": [".y"]},
            "hook_names": ["check", "not_a_hook"],
            "ingester_name": None,
        }
    ]
