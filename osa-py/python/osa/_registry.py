"""The process-global registries of hooks, conventions and ingesters.

Decorating a function with `@hook` and calling `convention(...)` fill them at import
time; `clear()` empties them (tests call it between cases).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from osa._columns import columns_for_output
from osa.types.ingester import IngesterSchedule, InitialRun, Limits
from osa.types.schema import MetadataSchema

Cardinality = Literal["one", "many"]


@dataclass
class HookInfo:
    """What `@hook` learned about a hook function.

    The fields and their order are those of the published SDK's `HookInfo`.

    Attributes:
        fn: the function (called with the `Record` as its one positional argument).
        name: the hook name (the function's `__name__`).
        hook_type: always `"hook"`.
        schema_type: the `T` of its `Record[T]` parameter.
        return_type: the raw return annotation (`None` when absent).
        output_type: the feature row type (`M` for `-> M`, `-> list[M]`, `-> M | None`).
        cardinality: `"many"` for `-> list[M]`, else `"one"`.
        dependencies: other annotated parameters (informational; never supplied).
        limits: resource limits of one execution.
        record_param: the name of the `Record[T]` parameter.
    """

    fn: Callable[..., Any]
    name: str
    hook_type: str
    schema_type: Any
    return_type: Any = None
    output_type: Any = None
    cardinality: Cardinality = "one"
    dependencies: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    record_param: str = "record"
    _columns: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def columns(self) -> list[dict[str, Any]]:
        """The feature columns of the output type (`[]` unless it is a pydantic model).

        Raises:
            ValueError: a field cannot be a column (name refused by the engine).
        """
        if self._columns is None:
            self._columns = columns_for_output(self.output_type)
        return self._columns

    def feature(self) -> dict[str, Any]:
        """The feature contract: `{"kind": "table", "cardinality", "columns"}`."""
        return {"kind": "table", "cardinality": self.cardinality, "columns": self.columns()}

    def columns_json(self) -> str:
        """`columns()` as JSON (what `osa._native.OutputWriter` takes)."""
        return json.dumps(self.columns())


@dataclass
class IngesterInfo:
    """What `convention(ingester=...)` learned about an ingester class.

    Attributes:
        ingester_cls: the class (instantiated with its `RuntimeConfig`, if any).
        name: the ingester name (its `name` attribute, else the class name).
        schedule: when it runs on a schedule, if it does.
        initial_run: its first run after a deploy, if any.
        limits: resource limits of one run.
        max_file_mb: the largest file it may store, in MiB.
    """

    ingester_cls: type
    name: str
    schedule: IngesterSchedule | None = None
    initial_run: InitialRun | None = None
    limits: Limits = field(default_factory=lambda: Limits(timeout_seconds=3600))
    max_file_mb: float | None = None


@dataclass(kw_only=True)
class ConventionInfo:
    """A registered convention (see `osa.convention`); keyword-only, field names as published.

    Attributes:
        schema_type: the record metadata schema (a `MetadataSchema` subclass, or any
            class with `schema_id()` and `to_field_definitions()`).
        ingester_info: the convention's ingester, if it has one.
    """

    title: str
    description: str
    version: str
    schema_type: type[MetadataSchema]
    file_requirements: dict[str, Any]
    hooks: list[Callable[..., Any]]
    purpose: str
    examples: list[Any]
    example_questions: list[str] = field(default_factory=list)
    ingester_info: IngesterInfo | None = None
    when_not_to_use: str | None = None
    see_also: list[str] | None = None


_hooks: list[HookInfo] = []
_conventions: list[ConventionInfo] = []
_ingesters: list[IngesterInfo] = []


def register_hook(info: HookInfo) -> None:
    """Adds a hook to the registry."""
    _hooks.append(info)


def register_convention(info: ConventionInfo) -> None:
    """Adds a convention to the registry."""
    _conventions.append(info)


def register_ingester(cls: type) -> IngesterInfo:
    """Reads an ingester class's attributes and adds it to the registry."""
    limits = getattr(cls, "limits", None)
    info = IngesterInfo(
        ingester_cls=cls,
        name=getattr(cls, "name", None) or cls.__name__,
        schedule=getattr(cls, "schedule", None),
        initial_run=getattr(cls, "initial_run", None),
        limits=limits if isinstance(limits, Limits) else Limits(timeout_seconds=3600),
        max_file_mb=getattr(cls, "max_file_mb", None),
    )
    _ingesters.append(info)
    return info


def hooks() -> list[HookInfo]:
    """The registered hooks, in registration order (a copy)."""
    return list(_hooks)


def conventions() -> list[ConventionInfo]:
    """The registered conventions, in registration order (a copy)."""
    return list(_conventions)


def ingesters() -> list[IngesterInfo]:
    """The registered ingesters, in registration order (a copy)."""
    return list(_ingesters)


def find_hook(fn: Callable[..., Any]) -> HookInfo | None:
    """The registration of `fn` (the same function object), if any."""
    for info in _hooks:
        if info.fn is fn:
            return info
    return None


def find_hook_by_name(name: str) -> HookInfo | None:
    """The first registered hook called `name`, if any."""
    for info in _hooks:
        if info.name == name:
            return info
    return None


def clear() -> None:
    """Empties every registry."""
    _hooks.clear()
    _conventions.clear()
    _ingesters.clear()
