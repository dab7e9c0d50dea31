"""Annotation analysis shared by hook introspection, feature columns and metadata fields.

Both spellings of an optional type are understood on every supported Python:
`Optional[X]` (a `typing.Union`) and `X | None` (a `types.UnionType` before 3.14).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import operator
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Literal

from pydantic import BaseModel

NoneType = type(None)

#: The kinds understood by the native column mapping (`osa._native.columns_for_fields`).
ColumnKind = Literal[
    "str", "int", "float", "bool", "datetime", "date", "uuid", "list", "dict", "model", "other"
]


def is_union(annotation: Any) -> bool:
    """Whether `annotation` is a union, in either spelling."""
    origin = typing.get_origin(annotation)
    return origin is typing.Union or origin is types.UnionType


def strip_wrappers(annotation: Any) -> Any:
    """Removes `Annotated[...]`, `NewType` and `type X = ...` alias wrappers."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):  # typing.NewType
            annotation = annotation.__supertype__
        elif type(annotation).__name__ == "TypeAliasType" and hasattr(annotation, "__value__"):
            annotation = annotation.__value__
        else:
            return annotation


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Splits `X | None` / `Optional[X]` into `(X, True)`; other annotations give `(a, False)`.

    A union of several non-None types keeps them together: `int | str | None` gives
    `(int | str, True)`.
    """
    annotation = strip_wrappers(annotation)
    if annotation is None or annotation is NoneType:
        return annotation, True
    if not is_union(annotation):
        return annotation, False
    args = typing.get_args(annotation)
    rest = [a for a in args if a is not NoneType]
    if len(rest) == len(args):
        return annotation, False
    if len(rest) == 1:
        return strip_wrappers(rest[0]), True
    return functools.reduce(operator.or_, rest), True


def _kind_of_values(values: Iterable[Any]) -> ColumnKind:
    """The kind of a `Literal`'s or an `Enum`'s values, as JSON serialises them."""
    kinds: set[ColumnKind] = set()
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("bool")
        elif isinstance(value, int):
            kinds.add("int")
        elif isinstance(value, float):
            kinds.add("float")
        elif isinstance(value, str):
            kinds.add("str")
        else:
            kinds.add("other")
    return _merge_kinds(kinds)


def _merge_kinds(kinds: set[ColumnKind]) -> ColumnKind:
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"int", "float"}:
        return "float"
    return "other"


def column_kind(annotation: Any) -> ColumnKind:
    """Classifies an annotation (with `None` already unwrapped) for the column mapping.

    The kind says how the value serialises to JSON (pydantic JSON mode): `other` means
    "a JSON string" (`Decimal`, `time`, `timedelta`, `Path`, `Any`...).
    """
    annotation = strip_wrappers(annotation)
    if annotation is Any:
        return "other"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return _kind_of_values(typing.get_args(annotation))
    if is_union(annotation):
        kinds = {column_kind(a) for a in typing.get_args(annotation) if a is not NoneType}
        return _merge_kinds(kinds)
    if origin is not None:
        annotation = origin
    if not isinstance(annotation, type):
        return "other"
    if issubclass(annotation, enum.Enum):
        return _kind_of_values(member.value for member in annotation)
    checks: list[tuple[type | tuple[type, ...], ColumnKind]] = [
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (datetime.datetime, "datetime"),
        (datetime.date, "date"),
        (uuid.UUID, "uuid"),
        ((bytes, bytearray), "other"),
        (BaseModel, "model"),
        ((list, tuple, AbstractSet, Sequence), "list"),
        ((dict, Mapping), "dict"),
    ]
    for base, kind in checks:
        if issubclass(annotation, base):
            return kind
    if dataclasses.is_dataclass(annotation) or typing.is_typeddict(annotation):
        return "model"
    return "other"
