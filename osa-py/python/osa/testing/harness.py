"""`run_hook`: call a hook as the runtime would, without files on disk or an engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from osa import _registry
from osa.runtime.entrypoint import call_hook, validate_metadata
from osa.types.files import FileCollection
from osa.types.record import Record


def run_hook(
    fn: Callable[..., Any],
    *,
    meta: dict[str, Any] | BaseModel,
    files: str | os.PathLike[str] | None = None,
    srn: str | None = None,
) -> Any:
    """Calls a registered hook on one record and returns its raw result.

    Args:
        fn: the `@hook` function (the same object the decorator returned).
        meta: the metadata, as a dict (validated with the hook's schema) or a schema
            instance (used as is).
        files: a directory whose regular files become `record.files`; none when omitted.
        srn: the record's SRN.

    Raises:
        ValueError: `fn` is not a registered hook.
        FileNotFoundError: `files` does not exist.
        osa.Reject: the hook rejected the record (and any other exception it raised).
    """
    info = _registry.find_hook(fn)
    if info is None:
        raise ValueError(f"Function {getattr(fn, '__name__', fn)} is not a registered hook")
    metadata = meta if isinstance(meta, BaseModel) else validate_metadata(info.schema_type, meta)
    record: Record[Any] = Record(
        id=str(uuid.uuid4()),
        created_at=datetime.now(UTC),
        metadata=metadata,
        files=FileCollection(files) if files is not None else FileCollection.empty(),
        srn=srn or "",
    )
    return call_hook(info.fn, record)
