"""`convention(...)`: registers a kind of record with its schema, files, hooks and docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osa import _registry
from osa.authoring.example import Example
from osa.types.schema import MetadataSchema


def convention(
    *,
    title: str,
    description: str,
    version: str,
    schema: type[MetadataSchema],
    files: dict[str, Any],
    hooks: list[Callable[..., Any]],
    purpose: str,
    examples: list[Example],
    ingester: type | None = None,
    example_questions: list[str] | None = None,
    when_not_to_use: str | None = None,
    see_also: list[str] | None = None,
) -> None:
    """Registers a convention.

    Nothing is validated here: the docs gate and the engine's rules are applied by
    `osa manifest` (and deploys).

    Args:
        title: human title; the server derives the convention's slug from it.
        description: what records of this convention are.
        version: the schema's semantic version (`1.0.0`).
        schema: the `MetadataSchema` subclass records follow.
        files: file rules: `accepted_types`, `max_count`, `max_file_size` (bytes) and
            optionally `min_count`.
        hooks: the `@hook` functions run on each record, in order.
        purpose: what the convention is for (docs gate: non-blank).
        examples: worked examples (docs gate: at least one).
        ingester: an `Ingester` class pulling records from upstream.
        example_questions: questions the features answer (docs gate: at least 3
            distinct questions across these and the examples).
        when_not_to_use: when another convention fits better.
        see_also: related conventions or links.
    """
    ingester_info = _registry.register_ingester(ingester) if ingester is not None else None
    _registry.register_convention(
        _registry.ConventionInfo(
            title=title,
            description=description,
            version=version,
            schema_type=schema,
            file_requirements=files,
            hooks=hooks,
            purpose=purpose,
            examples=list(examples),
            ingester_info=ingester_info,
            example_questions=example_questions or [],
            when_not_to_use=when_not_to_use,
            see_also=see_also,
        )
    )
