"""`osa.manifest.generate_manifest` and `Manifest`: the legacy introspection manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel

from osa import Example, Field, Limits, Record, Schema, convention, hook
from osa.manifest import (
    ColumnDef,
    ConventionManifest,
    HookManifestEntry,
    Manifest,
    generate_manifest,
)


class Structure(Schema):
    __schema_id__ = "structure"

    organism: str = Field(description="é organism", examples=["Human"])
    weight: float | None = Field(default=None, unit="kDa")


class Other(Schema):
    __schema_id__ = "other-schema"

    x: int


class Pocket(BaseModel):
    pocket_id: str
    score: float = Field(unit="Å")
    found: datetime
    ref: UUID | None = None


def _example() -> Example:
    return Example(question="q?", query="q", interpretation="i")


def test_empty_registry():
    m = generate_manifest()
    assert m == Manifest(hooks=[], conventions=[], schemas={})
    assert m.model_dump_json(indent=2) == (
        '{\n  "hooks": [],\n  "conventions": [],\n  "schemas": {}\n}'
    )


def test_hooks_columns_and_schemas():
    @hook
    def detect(record: Record[Structure]) -> list[Pocket]:
        return []

    @hook(limits=Limits(timeout_seconds=5))
    def check(record: Record[Other]) -> None: ...

    @hook
    def again(record: Record[Structure]) -> dict[str, Any]:
        return {}

    m = generate_manifest()
    assert [(h.name, h.record_schema, h.cardinality, h.runner) for h in m.hooks] == [
        ("detect", "Structure", "many", "oci"),
        ("check", "Other", "one", "oci"),
        ("again", "Structure", "one", "oci"),
    ]
    assert m.hooks[0].columns == [
        ColumnDef(name="pocket_id", json_type="string", required=True),
        ColumnDef(name="score", json_type="number", required=True, unit="Å"),
        ColumnDef(name="found", json_type="string", format="date-time", required=True),
        ColumnDef(name="ref", json_type="string", format="uuid", required=False),
    ]
    assert m.hooks[1].columns == []
    assert m.hooks[2].columns == []
    # One schema per distinct hook schema, in hook order, keyed by class name.
    assert list(m.schemas) == ["Structure", "Other"]
    assert m.schemas["Structure"] == Structure.model_json_schema()
    assert m.schemas["Other"]["required"] == ["x"]
    # Every column key is written, null or not (no exclude_none).
    dumped = m.model_dump(mode="json")
    assert dumped["hooks"][0]["columns"][0] == {
        "name": "pocket_id",
        "json_type": "string",
        "format": None,
        "required": True,
        "description": None,
        "unit": None,
    }


def test_a_record_type_that_is_not_a_model_has_an_empty_schema():
    @hook
    def loose(record: Record[dict]) -> None:  # type: ignore[type-arg]
        ...

    m = generate_manifest()
    assert m.hooks[0].record_schema == "dict"
    assert m.schemas == {"dict": {}}


def test_conventions():
    @hook
    def detect(record: Record[Structure]) -> list[Pocket]:
        return []

    def unregistered(record: Record[Structure]) -> None: ...

    class Puller:
        name = "my-ingester"

    files = {"accepted_types": [".cif"], "max_count": 2, "unknown": True}
    convention(
        title="Structures",
        description="Protein structures",
        version="2.1.0",
        schema=Other,
        files=files,
        hooks=[detect, unregistered],
        purpose="p",
        examples=[_example()],
        ingester=Puller,
    )
    convention(
        title="Plain",
        description="no ingester",
        version="1.0.0",
        schema=Structure,
        files={},
        hooks=[],
        purpose="",
        examples=[],
    )
    m = generate_manifest()
    assert m.conventions == [
        ConventionManifest(
            title="Structures",
            description="Protein structures",
            version="2.1.0",
            record_schema="Other",
            # The convention(files=...) dict as given: nothing is dropped or added.
            file_requirements={"accepted_types": [".cif"], "max_count": 2, "unknown": True},
            hook_names=["detect", "unregistered"],
            ingester_name="my-ingester",
        ),
        ConventionManifest(
            title="Plain",
            description="no ingester",
            version="1.0.0",
            record_schema="Structure",
            file_requirements={},
            hook_names=[],
            ingester_name=None,
        ),
    ]
    # Only hooks' schemas are listed (not a convention's schema no hook uses).
    assert list(m.schemas) == ["Structure"]


def test_serialisation_round_trip():
    @hook
    def detect(record: Record[Structure]) -> list[Pocket]:
        return []

    m = generate_manifest()
    restored = Manifest.model_validate_json(m.model_dump_json())
    assert restored == m
    assert restored.hooks[0].columns[1].unit == "Å"
    # Non-ASCII text is written as is by model_dump_json.
    assert "é organism" in m.model_dump_json(indent=2)


def test_models_defaults():
    entry = HookManifestEntry(name="h", record_schema="S", cardinality="one", columns=[])
    assert entry.runner == "oci"
    conv = ConventionManifest(
        title="t",
        description="d",
        version="1.0.0",
        record_schema="S",
        file_requirements={},
        hook_names=[],
    )
    assert conv.ingester_name is None
    assert Manifest(hooks=[], schemas={}).conventions == []


def test_an_output_field_the_engine_refuses_is_an_error():
    class Bad(BaseModel):
        BadName: int

    @hook
    def bad(record: Record[Structure]) -> Bad:
        return Bad(BadName=1)

    with pytest.raises(ValueError, match="BadName"):
        generate_manifest()
