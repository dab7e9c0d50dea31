"""Convention manifests, the docs gate and the legacy introspection manifest.

`build_manifest`/`manifest_document` give the deploy payload without releases (`osa
manifest`); `generate_manifest`/`Manifest` the legacy introspection manifest (`osa meta`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict

from osa import _columns, _native, _registry
from osa.errors import DeployError
from osa.types.schema import MetadataSchema

__all__ = [
    "FILE_REQUIREMENT_KEYS",
    "MANIFEST_VERSION",
    "MIN_TRIGGER_QUESTIONS",
    "ColumnDef",
    "ConventionManifest",
    "HookManifestEntry",
    "Manifest",
    "build_manifest",
    "check_docs",
    "docs_gaps",
    "generate_columns",
    "generate_manifest",
    "manifest_document",
]

log = logging.getLogger("osa.manifest")

#: Version of the `osa manifest` document.
MANIFEST_VERSION = 1
#: Distinct questions the docs gate asks for.
MIN_TRIGGER_QUESTIONS = 3
#: The keys of `convention(files=...)` that reach the payload.
FILE_REQUIREMENT_KEYS = ("accepted_types", "max_count", "max_file_size", "min_count")

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
            record_schema=_type_name(conv.schema),
            file_requirements=conv.file_requirements,
            hook_names=[_type_name(fn) for fn in conv.hooks],
            ingester_name=conv.ingester.name if conv.ingester is not None else None,
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


def _file_requirements(conv: _registry.ConventionInfo) -> dict[str, Any]:
    files = conv.file_requirements
    unknown = sorted(str(k) for k in files if k not in FILE_REQUIREMENT_KEYS)
    if unknown:
        log.warning(
            'convention "%s": files keys %s are not used and were dropped (known: %s)',
            conv.title,
            ", ".join(unknown),
            ", ".join(FILE_REQUIREMENT_KEYS),
        )
    out = {k: files[k] for k in FILE_REQUIREMENT_KEYS if files.get(k) is not None}
    out.setdefault("min_count", 0)
    return out


def _hook_info(conv: _registry.ConventionInfo, fn: Any) -> _registry.HookInfo:
    info = _registry.find_hook(fn) or _registry.find_hook_by_name(getattr(fn, "__name__", ""))
    if info is None:
        raise DeployError(
            f'convention "{conv.title}" lists {getattr(fn, "__name__", fn)!r}, which is not '
            "a registered hook",
            hint="Decorate the function with @hook.",
        )
    return info


def _hook_entry(conv: _registry.ConventionInfo, fn: Any) -> dict[str, Any]:
    info = _hook_info(conv, fn)
    try:
        feature = info.feature()
    except ValueError as e:
        raise DeployError(
            f'convention "{conv.title}", hook {info.name}: {e}',
            hint="Rename the field: columns are 1-63 characters of [a-z0-9_] starting "
            "with a letter.",
        ) from e
    return {
        "name": info.name,
        "config": {},
        "limits": info.limits.model_dump(mode="json"),
        "feature": feature,
    }


def _ingester_entry(conv: _registry.ConventionInfo) -> dict[str, Any] | None:
    ing = conv.ingester
    if ing is None:
        return None
    entry: dict[str, Any] = {"name": ing.name}
    runtime_config = getattr(ing.cls, "RuntimeConfig", None)
    if isinstance(runtime_config, type) and issubclass(runtime_config, BaseModel):
        try:
            entry["config"] = runtime_config().model_dump(mode="json")
        except pydantic.ValidationError as e:
            raise DeployError(
                f'convention "{conv.title}", ingester {ing.name}: RuntimeConfig() fails '
                f"without arguments: {e}",
                hint="Give every RuntimeConfig field a default.",
            ) from e
    entry["limits"] = ing.limits.model_dump(mode="json")
    if ing.schedule is not None:
        entry["schedule"] = ing.schedule.model_dump(mode="json", exclude_none=True)
    if ing.initial_run is not None:
        entry["initial_run"] = ing.initial_run.model_dump(mode="json", exclude_none=True)
    return entry


def build_manifest(conv: _registry.ConventionInfo) -> dict[str, Any]:
    """The deploy payload of one convention, without releases.

    Raises:
        DeployError: a listed hook is not registered, an output field cannot be a
            column, or an ingester's `RuntimeConfig` has no defaults.
    """
    schema = conv.schema
    if not (isinstance(schema, type) and issubclass(schema, MetadataSchema)):
        raise DeployError(
            f'convention "{conv.title}": schema must be a MetadataSchema subclass, got {schema!r}'
        )
    body: dict[str, Any] = {
        "title": conv.title,
        "description": conv.description,
        "schema": {
            "id": schema.schema_id(),
            "version": conv.version,
            "fields": [
                f.model_dump(mode="json", exclude_none=True) for f in schema.to_field_definitions()
            ],
        },
        "file_requirements": _file_requirements(conv),
        "hooks": [_hook_entry(conv, fn) for fn in conv.hooks],
    }
    ingester = _ingester_entry(conv)
    if ingester is not None:
        body["ingester"] = ingester
    docs: dict[str, Any] = {
        "purpose": conv.purpose,
        "example_questions": list(conv.example_questions),
        "examples": [e.model_dump(mode="json") for e in conv.examples],
    }
    if conv.when_not_to_use is not None:
        docs["when_not_to_use"] = conv.when_not_to_use
    if conv.see_also is not None:
        docs["see_also"] = list(conv.see_also)
    body["docs"] = docs
    return body


def check_engine_rules(conv: _registry.ConventionInfo, body: dict[str, Any]) -> None:
    """Checks a manifest body with the engine's deploy payload parser.

    Raises:
        DeployError: naming the offending path (`file_requirements: missing field
            max_file_size`, `hooks[0].name: ...`).
    """
    try:
        _native.check_convention_payload(json.dumps(body))
    except ValueError as e:
        raise DeployError(
            f'convention "{conv.title}" would be refused by the engine: {e}',
            hint="Fix the convention(...) call or the hook named in the message.",
        ) from e


def manifest_document(
    conventions: Iterable[_registry.ConventionInfo] | None = None,
    *,
    docs_check: bool = True,
    engine_check: bool = True,
) -> dict[str, Any]:
    """`{"manifest_version": 1, "conventions": [...]}` for the given (or all) conventions.

    Raises:
        DeployError: the docs gate or the engine's rules refuse a convention.
    """
    convs = list(_registry.conventions() if conventions is None else conventions)
    if docs_check:
        check_docs(convs)
    bodies = []
    for conv in convs:
        body = build_manifest(conv)
        if engine_check:
            check_engine_rules(conv, body)
        bodies.append(body)
    return {"manifest_version": MANIFEST_VERSION, "conventions": bodies}
