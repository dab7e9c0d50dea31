"""Hook output types → feature columns.

Python reads each field's annotation and metadata; the mapping itself (kinds → JSON
types and formats, `required`, column-name rules) is `osa._native.columns_for_fields`,
shared with the engine's own checks.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import ComputedFieldInfo, FieldInfo

from osa import _native
from osa._typing import column_kind, unwrap_optional


def _unit(extra: Any) -> str | None:
    if isinstance(extra, dict):
        unit = extra.get("unit")
        if isinstance(unit, str):
            return unit
    return None


def describe_field(name: str, info: FieldInfo) -> dict[str, Any]:
    """The description of one model field that `columns_for_fields` takes."""
    inner, optional = unwrap_optional(info.annotation)
    return {
        "name": name,
        "type": column_kind(inner),
        "optional": optional,
        "has_default": not info.is_required(),
        "description": info.description,
        "unit": _unit(info.json_schema_extra),
    }


def describe_computed_field(name: str, info: ComputedFieldInfo) -> dict[str, Any]:
    """The description of a `@computed_field` (dumped like a field, never defaulted)."""
    inner, optional = unwrap_optional(info.return_type)
    return {
        "name": name,
        "type": column_kind(inner),
        "optional": optional,
        "has_default": False,
        "description": info.description,
        "unit": _unit(info.json_schema_extra),
    }


def describe_model(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The field descriptions of a model, in the order `model_dump` writes them.

    Fields excluded from serialisation (`Field(exclude=True)`) are left out.
    """
    described = [
        describe_field(name, info)
        for name, info in model.model_fields.items()
        if info.exclude is not True
    ]
    described += [
        describe_computed_field(name, info) for name, info in model.model_computed_fields.items()
    ]
    return described


def generate_columns(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The feature columns (engine `ColumnDef`s, as dicts) of an output model.

    Raises:
        ValueError: a field name the engine refuses as a column (uppercase, too long,
            not starting with a letter...), naming the field and the rule. Names such
            as `id`, `record_id` or `run_id` are data columns like any other.
    """
    result: list[dict[str, Any]] = json.loads(
        _native.columns_for_fields(json.dumps(describe_model(model)))
    )
    return result


def columns_for_output(output_type: Any) -> list[dict[str, Any]]:
    """Columns of a hook's output type: those of a pydantic model, else `[]`."""
    if isinstance(output_type, type) and issubclass(output_type, BaseModel):
        return generate_columns(output_type)
    return []
