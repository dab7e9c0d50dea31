"""Hook output types → feature columns, and metadata schemas → field definitions.

These tests also run under Python 3.13 (scripts/python-tests.sh), where `X | None` is a
`types.UnionType` that the published SDK did not unwrap.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType, Optional

import pytest
from pydantic import BaseModel, computed_field
from typing_extensions import TypedDict

from osa import Field, Record, Schema, _native, hook
from osa._columns import generate_columns
from osa._typing import column_kind, unwrap_optional


class Nested(BaseModel):
    a: int


@dataclass
class Point:
    x: float


class Typed(TypedDict):
    k: str


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


UserId = NewType("UserId", int)


def column(annotation: Any, **field_kwargs: Any) -> dict[str, Any]:
    """The single column of a model with one field `f` of the given annotation."""
    namespace: dict[str, Any] = {"__annotations__": {"f": annotation}}
    if field_kwargs:
        namespace["f"] = Field(**field_kwargs)
    model = type("M", (BaseModel,), namespace)
    (col,) = generate_columns(model)
    assert col["name"] == "f"
    return col


def shape(col: dict[str, Any]) -> tuple[str, str | None, bool]:
    return col["json_type"], col.get("format"), col["required"]


@pytest.mark.parametrize(
    ("annotation", "json_type", "fmt"),
    [
        (str, "string", None),
        (int, "integer", None),
        (float, "number", None),
        (bool, "boolean", None),
        (datetime, "string", "date-time"),
        (date, "string", "date"),
        (uuid.UUID, "string", "uuid"),
        (list[int], "array", None),
        (list[Nested], "array", None),
        (list, "array", None),
        (tuple[int, ...], "array", None),
        (set[str], "array", None),
        (dict[str, int], "object", None),
        (dict, "object", None),
        (Nested, "object", None),
        (Point, "object", None),
        (Typed, "object", None),
        (Literal["a", "b"], "string", None),
        (Literal[1, 2], "integer", None),
        (Colour, "string", None),
        (Level, "integer", None),
        (int | float, "number", None),
        (Annotated[int, "meta"], "integer", None),
        (UserId, "integer", None),
        (Decimal, "string", None),
        (time, "string", None),
        (timedelta, "string", None),
        (bytes, "string", None),
        (Any, "string", None),
        (int | str, "string", None),
    ],
)
def test_type_mapping(annotation, json_type, fmt):
    assert shape(column(annotation)) == (json_type, fmt, True)


@pytest.mark.parametrize(
    ("annotation", "json_type", "fmt"),
    [
        (float | None, "number", None),
        (Optional[float], "number", None),  # noqa: UP045 - the spelling under test
        (bool | None, "boolean", None),
        (Optional[bool], "boolean", None),  # noqa: UP045
        (None | datetime, "string", "date-time"),
        (Optional[uuid.UUID], "string", "uuid"),  # noqa: UP045
        (list[str] | None, "array", None),
        (Nested | None, "object", None),
        (Optional[Annotated[int, "x"]], "integer", None),  # noqa: UP045
        (int | float | None, "number", None),
    ],
)
def test_optional_unwraps_and_is_not_required(annotation, json_type, fmt):
    assert shape(column(annotation)) == (json_type, fmt, False)


def test_default_means_not_required():
    assert shape(column(bool, default=False)) == ("boolean", None, False)
    assert shape(column(list[int], default_factory=list)) == ("array", None, False)
    assert shape(column(int)) == ("integer", None, True)


def test_description_and_unit():
    col = column(float, description="druggability", unit="Å")
    assert col == {
        "name": "f",
        "json_type": "number",
        "required": True,
        "description": "druggability",
        "unit": "Å",
    }
    assert "description" not in column(float)
    assert "unit" not in column(float)


def test_model_columns_in_order_with_computed_and_excluded_fields():
    class Out(BaseModel):
        b: int
        a: str | None = None
        hidden: int = Field(default=0, exclude=True)

        @computed_field  # type: ignore[prop-decorator]
        @property
        def total(self) -> float:
            return 1.0

    assert [(c["name"], c["json_type"], c["required"]) for c in generate_columns(Out)] == [
        ("b", "integer", True),
        ("a", "string", False),
        ("total", "number", True),
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Score", "starting with a letter"),
        ("_run_id", "starting with a letter"),
        ("_id", "starting with a letter"),
        ("a" * 64, "1–63 characters"),
        ("déjà", "1–63 characters"),
        ("x-y", "1–63 characters"),
        ("", "1–63 characters"),
    ],
)
def test_hostile_column_names_raise_value_error(name, reason):
    fields = [{"name": name, "type": "int"}]
    with pytest.raises(ValueError, match=reason):
        _native.columns_for_fields(json.dumps(fields))


@pytest.mark.parametrize("name", ["id", "record_id", "run_id", "created_at", "row_index"])
def test_names_of_system_fields_are_data_columns(name):
    fields = [{"name": name, "type": "str"}]
    columns = json.loads(_native.columns_for_fields(json.dumps(fields)))
    assert [c["name"] for c in columns] == [name]


def test_hostile_field_name_in_a_model():
    bad = type("Bad", (BaseModel,), {"__annotations__": {"Score": int}})
    with pytest.raises(ValueError, match="field `Score` cannot be a feature column"):
        generate_columns(bad)


def test_native_mapping_rejects_bad_descriptions():
    with pytest.raises(ValueError, match="invalid field description"):
        _native.columns_for_fields('[{"name": "a", "type": "complex"}]')
    with pytest.raises(ValueError, match="invalid field description"):
        _native.columns_for_fields('{"name": "a"}')
    with pytest.raises(ValueError, match="declared twice"):
        _native.columns_for_fields('[{"name": "a", "type": "int"}, {"name": "a", "type": "str"}]')


def test_hook_columns_and_feature():
    class Meta(Schema):
        __schema_id__ = "cols-meta"

    class Out(BaseModel):
        score: float | None = Field(default=None, unit="Å")
        label: str

    @hook
    def many(record: Record[Meta]) -> list[Out]:
        return []

    @hook
    def validator(record: Record[Meta]) -> None: ...

    @hook
    def dict_out(record: Record[Meta]) -> dict[str, int]:
        return {}

    info_many, info_validator, info_dict = __import__("osa")._registry.hooks()
    assert info_many.feature() == {
        "kind": "table",
        "cardinality": "many",
        "columns": [
            {"name": "score", "json_type": "number", "required": False, "unit": "Å"},
            {"name": "label", "json_type": "string", "required": True},
        ],
    }
    assert info_validator.feature()["columns"] == []
    assert info_dict.feature() == {"kind": "table", "cardinality": "one", "columns": []}


def test_unwrap_optional_both_spellings():
    assert unwrap_optional(int | None) == (int, True)
    assert unwrap_optional(Optional[int]) == (int, True)  # noqa: UP045
    assert unwrap_optional(int) == (int, False)
    assert unwrap_optional(int | str) == (int | str, False)
    inner, optional = unwrap_optional(int | str | None)
    assert optional
    assert set(inner.__args__) == {int, str}
    assert column_kind(inner) == "other"


class Structure(Schema):
    __schema_id__ = "pdb-structure"

    weight: float = Field(unit="kDa")
    title: str = Field(description="Title", examples=["Foo", 3])
    count: int
    resolution: float | None = Field(default=None, unit="Å")
    legacy: Optional[float] = None  # noqa: UP045
    flag: bool = False
    day: date
    when: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    note: str = Field(default="", json_schema_extra={"max_length": 10, "examples": ["x"]})
    nullable_required: int | None


def test_metadata_field_definitions():
    got = [f.model_dump(exclude_none=True) for f in Structure.to_field_definitions()]
    exactly_one = {"cardinality": "exactly_one"}
    assert got == [
        {
            "name": "weight",
            "type": "number",
            "required": True,
            **exactly_one,
            "constraints": {"type": "number", "unit": "kDa"},
        },
        {
            "name": "title",
            "type": "text",
            "required": True,
            **exactly_one,
            "description": "Title",
            "examples": ["Foo", "3"],
        },
        {
            "name": "count",
            "type": "number",
            "required": True,
            **exactly_one,
            "constraints": {"type": "number", "integer_only": True},
        },
        # `X | None` and `Optional[X]` unwrap on every Python (published SDK: text on 3.13).
        {
            "name": "resolution",
            "type": "number",
            "required": False,
            **exactly_one,
            "constraints": {"type": "number", "unit": "Å"},
        },
        {
            "name": "legacy",
            "type": "number",
            "required": False,
            **exactly_one,
            "constraints": {"type": "number"},
        },
        {"name": "flag", "type": "boolean", "required": False, **exactly_one},
        {"name": "day", "type": "date", "required": True, **exactly_one},
        {"name": "when", "type": "date", "required": False, **exactly_one},
        {"name": "tags", "type": "text", "required": False, **exactly_one},
        {
            "name": "note",
            "type": "text",
            "required": False,
            **exactly_one,
            "examples": ["x"],
            "constraints": {"type": "text", "max_length": 10},
        },
        # Metadata `required` follows the default, as upstream: no default → required.
        {
            "name": "nullable_required",
            "type": "number",
            "required": True,
            **exactly_one,
            "constraints": {"type": "number", "integer_only": True},
        },
    ]


def test_public_generate_columns_gives_column_models():
    from osa.manifest import ColumnDef
    from osa.manifest import generate_columns as public_generate_columns

    class Out(BaseModel):
        score: float = Field(description="", unit="Å")
        seen: datetime | None = None
        label: str = Field(description="the label")

    columns = public_generate_columns(Out)
    assert all(isinstance(c, ColumnDef) for c in columns)
    assert [(c.name, c.json_type, c.format, c.required) for c in columns] == [
        ("score", "number", None, True),
        ("seen", "string", "date-time", False),
        ("label", "string", None, True),
    ]
    assert (columns[0].description, columns[0].unit) == ("", "Å")
    assert columns[2].description == "the label"
    # The same JSON as the manifests carry.
    assert [c.model_dump(exclude_none=True) for c in columns] == generate_columns(Out)
    assert json.loads(columns[1].model_dump_json(exclude_none=True)) == generate_columns(Out)[1]
