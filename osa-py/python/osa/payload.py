"""The deploy payload of a convention, as typed models.

`build_manifest(conv)` reads a registered convention into a `ConventionManifest` with no
releases; `bind_releases` returns a copy with a `ComponentRelease` on each built hook
and on the ingester; `model_dump(by_alias=True, exclude_none=True)` is the body of
`POST /conventions` (no `null` anywhere, absent options left out). `manifest_document`
is what `osa manifest` prints. The models, their names and the wire shape are those of
the published SDK's `osa deploy`; the engine's own parser checks each body
(`check_engine_rules`) so a payload it would refuse is caught before any build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from osa import _native, _registry
from osa.authoring.example import Example
from osa.errors import DeployError
from osa.manifest import ColumnDef, check_docs
from osa.types.ingester import IngesterSchedule, InitialRun, Limits
from osa.types.schema import FieldDefinition

__all__ = [
    "FILE_REQUIREMENT_KEYS",
    "MANIFEST_VERSION",
    "Component",
    "ComponentRelease",
    "ConventionDocs",
    "ConventionManifest",
    "Feature",
    "FileRequirements",
    "Hook",
    "Ingester",
    "SchemaRef",
    "bind_releases",
    "build_manifest",
    "check_engine_rules",
    "hook_columns",
    "manifest_body",
    "manifest_document",
]

log = logging.getLogger("osa.payload")

#: Version of the `osa manifest` document.
MANIFEST_VERSION = 1
#: The keys of `convention(files=...)` that reach the payload.
FILE_REQUIREMENT_KEYS = ("accepted_types", "max_count", "max_file_size", "min_count")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ComponentRelease(_Wire):
    """What a hook or ingester runs: an image (or a local command) and its digest.

    Attributes:
        image: the OCI image reference (`osa-hooks/<name>:latest`, `<registry>/<name>:latest`).
        command: a local process release instead of an image (an OSA server on the
            same machine; admin only).
        digest: `sha256:<64 hex>`, the image's (or the command's content) digest.
        source_ref: where it was built from (`git:<short sha>`, `git:unknown`).
    """

    image: str | None = None
    command: list[str] | None = None
    digest: str
    source_ref: str


class Component(_Wire):
    """What hooks and ingesters share: a name, authored config and limits, a release."""

    name: str
    config: dict[str, Any] | None = None
    limits: Limits = PydanticField(default_factory=Limits)
    release: ComponentRelease | None = None


class Feature(_Wire):
    """A hook's output contract: one table, `one` or `many` rows per record."""

    kind: Literal["table"] = "table"
    cardinality: Literal["one", "many"]
    columns: list[ColumnDef] = PydanticField(default_factory=list)


class Hook(Component):
    """A hook of the convention with its feature contract (`config` is always `{}`)."""

    config: dict[str, Any] | None = PydanticField(default_factory=dict)
    feature: Feature


class Ingester(Component):
    """The convention's ingester: its `RuntimeConfig` defaults, schedule and first run."""

    schedule: IngesterSchedule | None = None
    initial_run: InitialRun | None = None


class SchemaRef(_Wire):
    """The record metadata schema: its id, the convention's version, its fields."""

    id: str
    version: str
    fields: list[FieldDefinition] = PydanticField(default_factory=list)


class FileRequirements(_Wire):
    """Which files a record carries (the engine requires all but `min_count`)."""

    accepted_types: list[str] | None = None
    max_count: int | None = None
    max_file_size: int | None = None
    min_count: int = 0


class ConventionDocs(_Wire):
    """The convention's documentation (what the docs gate checks)."""

    purpose: str
    example_questions: list[str] = PydanticField(default_factory=list)
    examples: list[Example] = PydanticField(default_factory=list)
    when_not_to_use: str | None = None
    see_also: list[str] | None = None


class ConventionManifest(_Wire):
    """The deploy body of one convention (`schema` on the wire, `record_schema` here)."""

    title: str
    description: str
    record_schema: SchemaRef = PydanticField(alias="schema")
    file_requirements: FileRequirements
    hooks: list[Hook] = PydanticField(default_factory=list)
    ingester: Ingester | None = None
    docs: ConventionDocs


def hook_columns(info: _registry.HookInfo) -> list[ColumnDef]:
    """The feature columns of a hook: its output model's, or none (`-> dict`, no return).

    Raises:
        ValueError: a field of the output model cannot be a column.
    """
    return [ColumnDef.model_validate(c) for c in info.columns()]


def _file_requirements(conv: _registry.ConventionInfo) -> FileRequirements:
    files = conv.file_requirements
    unknown = sorted(str(k) for k in files if k not in FILE_REQUIREMENT_KEYS)
    if unknown:
        log.warning(
            'convention "%s": files keys %s are not used and were dropped (known: %s)',
            conv.title,
            ", ".join(unknown),
            ", ".join(FILE_REQUIREMENT_KEYS),
        )
    known = {k: files[k] for k in FILE_REQUIREMENT_KEYS if files.get(k) is not None}
    try:
        return FileRequirements.model_validate(known)
    except pydantic.ValidationError as e:
        raise DeployError(f'convention "{conv.title}": files: {e}') from e


def _hook_info(conv: _registry.ConventionInfo, fn: Any) -> _registry.HookInfo:
    info = _registry.find_hook(fn) or _registry.find_hook_by_name(getattr(fn, "__name__", ""))
    if info is None:
        raise DeployError(
            f'convention "{conv.title}" lists {getattr(fn, "__name__", fn)!r}, which is not '
            "a registered hook",
            hint="Decorate the function with @hook.",
        )
    return info


def _hook(conv: _registry.ConventionInfo, fn: Any) -> Hook:
    info = _hook_info(conv, fn)
    try:
        columns = hook_columns(info)
    except ValueError as e:
        raise DeployError(
            f'convention "{conv.title}", hook {info.name}: {e}',
            hint="Rename the field: columns are 1-63 characters of [a-z0-9_] starting "
            "with a letter.",
        ) from e
    cardinality: Literal["one", "many"] = "many" if info.cardinality == "many" else "one"
    return Hook(
        name=info.name,
        config={},
        limits=info.limits,
        feature=Feature(cardinality=cardinality, columns=columns),
    )


def _ingester(conv: _registry.ConventionInfo) -> Ingester | None:
    ing = conv.ingester_info
    if ing is None:
        return None
    config = None
    runtime_config = getattr(ing.ingester_cls, "RuntimeConfig", None)
    if isinstance(runtime_config, type) and issubclass(runtime_config, BaseModel):
        try:
            config = runtime_config().model_dump(mode="json")
        except pydantic.ValidationError as e:
            raise DeployError(
                f'convention "{conv.title}", ingester {ing.name}: RuntimeConfig() fails '
                f"without arguments: {e}",
                hint="Give every RuntimeConfig field a default.",
            ) from e
    elif isinstance(runtime_config, type) and callable(getattr(runtime_config, "model_dump", None)):
        # A RuntimeConfig class that is not a pydantic model but dumps like one.
        dumped: Any = runtime_config().model_dump()
        config = dict(dumped)
    return Ingester(
        name=ing.name,
        config=config,
        limits=ing.limits,
        schedule=ing.schedule,
        initial_run=ing.initial_run,
    )


def _schema(conv: _registry.ConventionInfo) -> SchemaRef:
    schema = conv.schema_type
    schema_id = getattr(schema, "schema_id", None)
    definitions = getattr(schema, "to_field_definitions", None)
    if not (callable(schema_id) and callable(definitions)):
        raise DeployError(
            f'convention "{conv.title}": schema must be a MetadataSchema subclass, got {schema!r}'
        )
    try:
        fields = [FieldDefinition.model_validate(f) for f in definitions()]
    except pydantic.ValidationError as e:
        raise DeployError(f'convention "{conv.title}": schema fields: {e}') from e
    return SchemaRef(id=schema_id(), version=conv.version, fields=fields)


def build_manifest(conv: _registry.ConventionInfo) -> ConventionManifest:
    """The deploy payload of one convention, without releases.

    Raises:
        DeployError: the schema is not a metadata schema, a listed hook is not
            registered, an output field cannot be a column, or an ingester's
            `RuntimeConfig` has no defaults.
    """
    return ConventionManifest(
        title=conv.title,
        description=conv.description,
        schema=_schema(conv),
        file_requirements=_file_requirements(conv),
        hooks=[_hook(conv, fn) for fn in conv.hooks],
        ingester=_ingester(conv),
        docs=ConventionDocs(
            purpose=conv.purpose,
            example_questions=list(conv.example_questions),
            examples=list(conv.examples),
            when_not_to_use=conv.when_not_to_use,
            see_also=None if conv.see_also is None else list(conv.see_also),
        ),
    )


def bind_releases(
    manifest: ConventionManifest,
    hook_releases: Mapping[str, ComponentRelease],
    ingester_release: ComponentRelease | None,
) -> ConventionManifest:
    """A copy of `manifest` with each hook's release (by hook name) and the ingester's.

    A hook with no entry in `hook_releases` keeps no release; `manifest` is unchanged.
    """
    bound = manifest.model_copy(deep=True)
    for hook in bound.hooks:
        release = hook_releases.get(hook.name)
        hook.release = None if release is None else release.model_copy()
    if bound.ingester is not None:
        bound.ingester.release = None if ingester_release is None else ingester_release.model_copy()
    return bound


def manifest_body(conv: _registry.ConventionInfo) -> dict[str, Any]:
    """`build_manifest(conv)` as JSON-ready data (the wire form, no releases)."""
    return build_manifest(conv).model_dump(mode="json", by_alias=True, exclude_none=True)


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
        body = manifest_body(conv)
        if engine_check:
            check_engine_rules(conv, body)
        bodies.append(body)
    return {"manifest_version": MANIFEST_VERSION, "conventions": bodies}
