"""Metadata schemas (`MetadataSchema` / `Schema`), `Field` and `FieldDefinition`."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from osa import _native
from osa._typing import strip_wrappers, unwrap_optional

#: The rule `__schema_id__` follows (the engine's `SchemaId`).
SCHEMA_ID_PATTERN = r"^[a-z][a-z0-9\-]{2,63}$"


class FieldDefinition(BaseModel):
    """One metadata field as the server stores it (see `MetadataSchema.to_field_definitions`)."""

    name: str
    type: Literal["text", "number", "boolean", "date"]
    required: bool
    cardinality: Literal["exactly_one"] = "exactly_one"
    description: str | None = None
    examples: list[str] | None = None
    constraints: dict[str, Any] | None = None


class MetadataSchema(BaseModel):
    """Base class of record metadata schemas.

    Every subclass must declare `__schema_id__` in its own class body: a slug of 3-64
    characters of `[a-z0-9-]` starting with a letter (it is not inherited). Unknown
    metadata keys are refused (`extra="forbid"`).
    """

    model_config = ConfigDict(extra="forbid")

    __schema_id__: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        schema_id = cls.__dict__.get("__schema_id__")
        if schema_id is None:
            raise TypeError(
                f"{cls.__qualname__} must declare ``__schema_id__`` in its own class body "
                f"(a slug such as 'pdb-structure' matching {SCHEMA_ID_PATTERN})"
            )
        if not isinstance(schema_id, str):
            raise TypeError(
                f"{cls.__qualname__}.__schema_id__ {schema_id!r} is invalid: it must be a str"
            )
        try:
            _native.validate_schema_id(schema_id)
        except ValueError as e:
            raise TypeError(
                f"{cls.__qualname__}.__schema_id__ {schema_id!r} is invalid: "
                f"it must match {SCHEMA_ID_PATTERN} ({e})"
            ) from None

    @classmethod
    def schema_id(cls) -> str:
        """The schema's id (`__schema_id__`)."""
        return cls.__schema_id__

    @classmethod
    def to_field_definitions(cls) -> list[FieldDefinition]:
        """The fields as server `FieldDefinition`s, in declaration order."""
        return [_field_definition(name, info) for name, info in cls.model_fields.items()]


def Field(*, unit: str | None = None, **kwargs: Any) -> Any:  # noqa: N802 - published name
    """`pydantic.Field` with an extra keyword-only `unit` (stored in `json_schema_extra`).

    Every `pydantic.Field` keyword is accepted (`default=`, `description=`, `ge=`...);
    positional arguments are not.
    """
    if unit is not None:
        extra = kwargs.get("json_schema_extra")
        if extra is None:
            extra = {}
        elif not isinstance(extra, dict):
            raise TypeError("Field(unit=...) needs json_schema_extra to be a dict or absent")
        kwargs["json_schema_extra"] = {**extra, "unit": unit}
    return pydantic.Field(**kwargs)


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def _examples(info: FieldInfo, extra: dict[str, Any]) -> list[str] | None:
    raw = info.examples if info.examples else extra.get("examples")
    if not raw or not isinstance(raw, list | tuple):
        return None
    return [str(e) for e in raw]


def _field_definition(name: str, info: FieldInfo) -> FieldDefinition:
    inner, _optional = unwrap_optional(info.annotation)
    inner = strip_wrappers(inner)
    extra = _extra(info)
    unit = extra.get("unit")
    field_type: Literal["text", "number", "boolean", "date"] = "text"
    constraints: dict[str, Any] | None = None
    if inner is bool:
        field_type = "boolean"
    elif inner is int:
        field_type = "number"
        constraints = {"type": "number", "integer_only": True}
    elif inner is float:
        field_type = "number"
        constraints = {"type": "number"}
    elif isinstance(inner, type) and issubclass(inner, datetime.date):
        field_type = "date"
    if field_type == "number" and constraints is not None and unit is not None:
        constraints["unit"] = unit
    if field_type == "text":
        text_extra = {k: v for k, v in extra.items() if k != "examples"}
        if text_extra:
            constraints = {"type": "text", **text_extra}
    return FieldDefinition(
        name=name,
        type=field_type,
        required=info.is_required(),
        description=info.description or None,
        examples=_examples(info, extra),
        constraints=constraints,
    )
