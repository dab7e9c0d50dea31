"""Feature columns, the docs gate and the legacy introspection manifest.

`generate_columns` gives a hook output model's feature columns; `check_docs` is the
docs gate `osa manifest` and `osa deploy` run; `generate_manifest`/`Manifest` is the
legacy introspection manifest (`osa meta`). The deploy payload itself is built by
`osa.payload`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from osa import _columns, _registry
from osa.errors import DeployError

__all__ = [
    "MIN_TRIGGER_QUESTIONS",
    "ColumnDef",
    "ConventionManifest",
    "HookManifestEntry",
    "Manifest",
    "check_docs",
    "docs_gaps",
    "generate_columns",
    "generate_manifest",
]

log = logging.getLogger("osa.manifest")

#: Distinct questions the docs gate asks for.
MIN_TRIGGER_QUESTIONS = 3

DOCS_HINT = (
    "Documentation is mandatory: give convention(...) a non-blank purpose=, at least one "
    "Example in examples=, and at least 3 distinct questions across example_questions= "
    "and the examples."
)


class ColumnDef(BaseModel):
    """One feature column of a hook's output model (the engine's `ColumnDef`).

    `model_dump(exclude_none=True)` (or `model_dump_json(exclude_none=True)`) is the
    column as it appears in manifests and deploy payloads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    json_type: str
    format: str | None = None
    required: bool
    description: str | None = None
    unit: str | None = None


def generate_columns(model: type[BaseModel]) -> list[ColumnDef]:
    """The feature columns of a hook output model, in `model_dump` order.

    Raises:
        ValueError: a field name the engine refuses as a column (uppercase, too long,
            not starting with a letter...), naming the field and the rule. Names such
            as `id`, `record_id` or `run_id` are data columns like any other.
    """
    return [ColumnDef.model_validate(c) for c in _columns.generate_columns(model)]


class HookManifestEntry(BaseModel):
    """One hook in the legacy introspection manifest (display only, not deployable)."""

    name: str
    #: The `__name__` of the `T` in the hook's `Record[T]`.
    record_schema: str
    cardinality: str
    columns: list[ColumnDef]
    runner: str = "oci"


class ConventionManifest(BaseModel):
    """One convention in the legacy introspection manifest.

    Not the deploy body (that is `build_manifest`'s dict): `file_requirements` is the
    `convention(files=...)` dict as given, and hooks are only named.
    """

    title: str
    description: str
    version: str
    #: The `__name__` of the convention's schema class.
    record_schema: str
    file_requirements: dict[str, Any]
    #: The `__name__` of every function in `convention(hooks=...)`, registered or not.
    hook_names: list[str]
    ingester_name: str | None = None


class Manifest(BaseModel):
    """The legacy introspection manifest printed by `osa meta`."""

    hooks: list[HookManifestEntry]
    conventions: list[ConventionManifest] = []
    #: `{schema class name: model_json_schema()}` of the hooks' record schemas
    #: (`{}` for a `Record[T]` whose `T` is not a pydantic model).
    schemas: dict[str, dict[str, Any]]


def _type_name(tp: Any) -> str:
    return str(getattr(tp, "__name__", tp))


def _json_schema(tp: Any) -> dict[str, Any]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.model_json_schema()
    return {}


def generate_manifest() -> Manifest:
    """The legacy introspection manifest of everything registered in this process.

    One `HookManifestEntry` per registered hook and one `ConventionManifest` per
    convention, in registration order, and the JSON schemas of the hooks' record
    schemas (keyed by class name, in hook order). No entry point is loaded and no
    rule (docs gate, engine checks) is applied; `manifest_document` is the deploy
    manifest.

    Raises:
        ValueError: a hook's output model has a field the engine cannot store as a
            column (as `generate_columns`).
    """
    hooks = [
        HookManifestEntry(
            name=info.name,
            record_schema=_type_name(info.schema_type),
            cardinality=info.cardinality,
            columns=[ColumnDef.model_validate(c) for c in info.columns()],
        )
        for info in _registry.hooks()
    ]
    conventions = [
        ConventionManifest(
            title=conv.title,
            description=conv.description,
            version=conv.version,
            record_schema=_type_name(conv.schema_type),
            file_requirements=conv.file_requirements,
            hook_names=[_type_name(fn) for fn in conv.hooks],
            ingester_name=conv.ingester_info.name if conv.ingester_info is not None else None,
        )
        for conv in _registry.conventions()
    ]
    schemas = {
        _type_name(info.schema_type): _json_schema(info.schema_type)
        for info in _registry.hooks()
        if info.schema_type is not None
    }
    return Manifest(hooks=hooks, conventions=conventions, schemas=schemas)


def docs_gaps(conv: _registry.ConventionInfo) -> list[str]:
    """The documentation a convention lacks (empty when the docs gate passes)."""
    gaps: list[str] = []
    if not conv.purpose.strip():
        gaps.append("purpose (must be non-empty)")
    questions = {q.strip() for q in [*conv.example_questions, *(e.question for e in conv.examples)]}
    questions.discard("")
    if len(questions) < MIN_TRIGGER_QUESTIONS:
        gaps.append(
            f"trigger questions (need ≥ {MIN_TRIGGER_QUESTIONS} distinct across "
            f"example_questions + worked examples, got {len(questions)})"
        )
    if not conv.examples:
        gaps.append("examples (need ≥ 1 Example, got 0)")
    return gaps


def check_docs(conventions: Iterable[_registry.ConventionInfo]) -> None:
    """The docs gate: raises for the first convention with gaps.

    Raises:
        DeployError: `deploy blocked: convention "<title>" is missing required
            documentation:` followed by one `    - <gap>` line per gap.
    """
    for conv in conventions:
        gaps = docs_gaps(conv)
        if gaps:
            lines = "\n".join(f"    - {gap}" for gap in gaps)
            raise DeployError(
                f'deploy blocked: convention "{conv.title}" is missing required '
                f"documentation:\n{lines}",
                hint=DOCS_HINT,
            )
