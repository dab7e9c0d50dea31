"""The docs gate, manifest bodies and the `osa manifest` command."""

from __future__ import annotations

import json

import pytest

from conftest import run, script
from osa import Example, Field, Limits, Record, Schema, _registry, convention, hook
from osa.cli.main import main as cli_main
from osa.errors import DeployError
from osa.manifest import check_docs, docs_gaps
from osa.payload import build_manifest, manifest_body, manifest_document

FILES = {"accepted_types": [".csv"], "max_count": 3, "max_file_size": 1_048_576}


class CellLine(Schema):
    __schema_id__ = "cell-line"

    name: str
    passage: int | None = Field(default=None, description="passage number")


def _example(q: str = "Which lines grow fastest?") -> Example:
    return Example(question=q, query="growth_rate > 1", interpretation="fast growers")


def _convention(**overrides: object) -> _registry.ConventionInfo:
    @hook
    def check(record: Record[CellLine]) -> None: ...

    kwargs: dict[str, object] = {
        "title": "Cell Lines",
        "description": "Cultured cell lines",
        "version": "0.1.0",
        "schema": CellLine,
        "files": FILES,
        "hooks": [check],
        "purpose": "Track cultured cell lines",
        "examples": [_example()],
        "example_questions": ["How old is a line?", "Which passage is it at?"],
    }
    kwargs.update(overrides)
    convention(**kwargs)  # type: ignore[arg-type]
    return _registry.conventions()[-1]


def test_docs_gate_passes():
    conv = _convention()
    assert docs_gaps(conv) == []
    check_docs([conv])


def test_docs_gate_messages():
    conv = _convention(purpose="  ", examples=[], example_questions=["same", " same ", ""])
    with pytest.raises(DeployError) as caught:
        check_docs([conv])
    assert str(caught.value) == (
        'deploy blocked: convention "Cell Lines" is missing required documentation:\n'
        "    - purpose (must be non-empty)\n"
        "    - trigger questions (need ≥ 3 distinct across example_questions + worked "
        "examples, got 1)\n"
        "    - examples (need ≥ 1 Example, got 0)"
    )
    assert "mandatory" in (caught.value.hint or "")


def test_docs_gate_counts_questions_across_both_lists():
    conv = _convention(example_questions=["Which lines grow fastest?", "Other?"])
    assert docs_gaps(conv) == [
        "trigger questions (need ≥ 3 distinct across example_questions + worked examples, got 2)"
    ]


def test_docs_gate_stops_at_the_first_failing_convention():
    good = _convention(title="Good")
    bad = _convention(title="Bad", purpose="")
    worse = _convention(title="Worse", examples=[])
    with pytest.raises(DeployError, match='convention "Bad"'):
        check_docs([good, bad, worse])


def test_manifest_body_shape():
    class Growth(Schema):
        __schema_id__ = "growth"

    from pydantic import BaseModel

    class Rate(BaseModel):
        rate: float = Field(unit="1/h")
        measured: bool = False

    @hook(limits=Limits(memory="1g"))
    def growth(record: Record[CellLine]) -> list[Rate]:
        return []

    conv = _convention(
        files={**FILES, "extensions": [".x"], "min_count": 1},
        when_not_to_use="for tissues",
    )
    conv.hooks.append(growth)
    body = manifest_body(conv)
    assert body == {
        "title": "Cell Lines",
        "description": "Cultured cell lines",
        "schema": {
            "id": "cell-line",
            "version": "0.1.0",
            "fields": [
                {"name": "name", "type": "text", "required": True, "cardinality": "exactly_one"},
                {
                    "name": "passage",
                    "type": "number",
                    "required": False,
                    "cardinality": "exactly_one",
                    "description": "passage number",
                    "constraints": {"type": "number", "integer_only": True},
                },
            ],
        },
        "file_requirements": {
            "accepted_types": [".csv"],
            "max_count": 3,
            "max_file_size": 1_048_576,
            "min_count": 1,
        },
        "hooks": [
            {
                "name": "check",
                "config": {},
                "limits": {"timeout_seconds": 300, "memory": "512m", "cpu": "0.5"},
                "feature": {"kind": "table", "cardinality": "one", "columns": []},
            },
            {
                "name": "growth",
                "config": {},
                "limits": {"timeout_seconds": 300, "memory": "1g", "cpu": "0.5"},
                "feature": {
                    "kind": "table",
                    "cardinality": "many",
                    "columns": [
                        {"name": "rate", "json_type": "number", "required": True, "unit": "1/h"},
                        {"name": "measured", "json_type": "boolean", "required": False},
                    ],
                },
            },
        ],
        "docs": {
            "purpose": "Track cultured cell lines",
            "example_questions": ["How old is a line?", "Which passage is it at?"],
            "examples": [
                {
                    "question": "Which lines grow fastest?",
                    "query": "growth_rate > 1",
                    "interpretation": "fast growers",
                }
            ],
            "when_not_to_use": "for tissues",
        },
    }
    document = manifest_document([conv])
    assert document == {"manifest_version": 1, "conventions": [body]}


def test_manifest_with_an_ingester():
    from pydantic import BaseModel

    class Puller:
        name = "pdb-rcsb"
        schedule = __import__("osa").IngesterSchedule(cron="0 * * * *")

        class RuntimeConfig(BaseModel):
            email: str = ""
            batch_size: int = 100

    conv = _convention(ingester=Puller)
    assert manifest_body(conv)["ingester"] == {
        "name": "pdb-rcsb",
        "config": {"email": "", "batch_size": 100},
        "limits": {"timeout_seconds": 3600, "memory": "512m", "cpu": "0.5"},
        "schedule": {"cron": "0 * * * *"},
    }
    manifest_document([conv])

    class NoDefaults:
        class RuntimeConfig(BaseModel):
            token: str

    with pytest.raises(DeployError, match="RuntimeConfig\\(\\) fails without arguments") as caught:
        build_manifest(_convention(ingester=NoDefaults))
    assert caught.value.hint == "Give every RuntimeConfig field a default."


def test_engine_rules_are_checked():
    conv = _convention(files={"accepted_types": [".csv"], "max_count": 3})
    with pytest.raises(DeployError, match="missing field `max_file_size`"):
        manifest_document([conv])
    manifest_document([conv], engine_check=False)

    with pytest.raises(DeployError, match="not semver"):
        manifest_document([_convention(version="1.0")])

    @hook
    def Bad_Name(record: Record[CellLine]) -> None: ...

    with pytest.raises(DeployError, match=r"hooks\[1\].name"):
        manifest_document([_convention(hooks=[_registry.hooks()[0].fn, Bad_Name])])


def test_unregistered_hook_function_is_an_error():
    def plain(record: Record[CellLine]) -> None: ...

    with pytest.raises(DeployError, match="'plain', which is not a registered hook"):
        build_manifest(_convention(hooks=[plain]))


def test_output_fields_named_like_system_fields_are_columns():
    from pydantic import BaseModel

    class Out(BaseModel):
        id: int
        record_id: str
        run_id: str
        created_at: str

    @hook
    def shadow(record: Record[CellLine]) -> Out:
        return Out(id=1, record_id="r", run_id="x", created_at="now")

    manifest = manifest_body(_convention(hooks=[shadow]))
    hooks = manifest["hooks"]
    assert [c["name"] for c in hooks[0]["feature"]["columns"]] == [
        "id",
        "record_id",
        "run_id",
        "created_at",
    ]


def test_cli_manifest_without_conventions(monkeypatch, capsys):
    monkeypatch.setattr("osa._discovery.entry_points", lambda group: [])
    assert cli_main(["manifest"]) == 1
    err = capsys.readouterr().err
    assert "error: no conventions registered" in err


def test_cli_usage():
    with pytest.raises(SystemExit) as caught:
        cli_main(["--version"])
    assert caught.value.code == 0
    assert cli_main([]) == 2


@pytest.mark.usefixtures("sample_installed")
def test_osa_manifest_command_for_the_sample_package():
    result = run([script("osa"), "manifest"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["manifest_version"] == 1
    (conv,) = document["conventions"]
    assert conv["title"] == "Protein Structures"
    assert conv["schema"]["id"] == "pdb-structure"
    fields = {f["name"]: f for f in conv["schema"]["fields"]}
    assert fields["resolution"] == {
        "name": "resolution",
        "type": "number",
        "required": False,
        "cardinality": "exactly_one",
        "constraints": {"type": "number", "unit": "Å"},
    }
    assert fields["deposition_date"]["type"] == "date"
    assert conv["file_requirements"] == {
        "accepted_types": [".cif", ".pdb"],
        "max_count": 5,
        "max_file_size": 10485760,
        "min_count": 0,
    }
    validate, pockets = conv["hooks"]
    assert validate == {
        "name": "validate_structure",
        "config": {},
        "limits": {"timeout_seconds": 300, "memory": "512m", "cpu": "0.5"},
        "feature": {"kind": "table", "cardinality": "one", "columns": []},
    }
    assert pockets == {
        "name": "find_pockets",
        "config": {},
        "limits": {"timeout_seconds": 600, "memory": "1g", "cpu": "1"},
        "feature": {
            "kind": "table",
            "cardinality": "many",
            "columns": [
                {"name": "pocket_id", "json_type": "integer", "required": True},
                {
                    "name": "score",
                    "json_type": "number",
                    "required": True,
                    "description": "druggability score",
                },
                {"name": "volume", "json_type": "number", "required": False, "unit": "Å^3"},
            ],
        },
    }
    assert "ingester" not in conv
    assert conv["docs"] == {
        "purpose": "Find ligand binding pockets in experimentally solved protein structures.",
        "example_questions": [
            "How many pockets does a structure have?",
            "What is the largest pocket?",
        ],
        "examples": [
            {
                "question": "Which structures have a highly druggable pocket?",
                "query": "find_pockets.score > 0.9",
                "interpretation": "Pockets scoring above 0.9 are likely druggable.",
            }
        ],
        "see_also": ["https://www.rcsb.org"],
    }
    assert "null" not in lines[0]


@pytest.mark.usefixtures("sample_installed")
def test_osa_version_command():
    result = run([script("osa"), "--version"])
    assert result.returncode == 0
    assert result.stdout.strip() == f"osa {__import__('osa').__version__}"
