"""`run_hook` and `run_ingester`: a hook or an ingester in this process, no engine.

`run_hook` calls a hook as the runtime would, without files on disk; `run_ingester`
collects what an ingester class pulls (both at the published SDK's module path,
`osa.testing.harness`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from osa import _registry
from osa.runtime.entrypoint import call_hook, validate_metadata
from osa.runtime.ingester_context import IngesterContext
from osa.types.files import FileCollection
from osa.types.ingester import IngesterRecord
from osa.types.record import Record

__all__ = ["IngesterResult", "run_hook", "run_ingester"]


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


@dataclass(frozen=True)
class IngesterResult:
    """What an ingester pulled: its name, the records and where their files are."""

    ingester_name: str
    records: list[IngesterRecord]
    files_dir: Path


def run_ingester(
    ingester_cls: type,
    *,
    limit: int | None = None,
    config: dict[str, Any] | None = None,
    since: datetime | None = None,
    session: dict[str, Any] | None = None,
    files_dir: str | os.PathLike[str] | None = None,
) -> IngesterResult:
    """Runs `ingester_cls().pull(...)` in this process and collects every record.

    The ingester is `ingester_cls(ingester_cls.RuntimeConfig(**config))` when `config`
    is given and the class has a `RuntimeConfig`, else `ingester_cls()` (a `config` is
    then ignored). `pull` is called with `ctx`, `since`, `limit`, `offset=0` and
    `session`; every record it yields is kept (no `max_file_mb` filter). Files go to
    `files_dir` (created when missing), or to a new temporary directory that is kept so
    the caller can read them; the context's output directory is a temporary one,
    removed afterwards.

    Returns:
        `IngesterResult(ingester_name, records, files_dir)`: the name is the class's
        `name` attribute (its `__name__` without one), the records in the order
        yielded, and the files directory as a `Path`.

    Raises:
        pydantic.ValidationError: `config` does not fit `RuntimeConfig`.
        RuntimeError: called from a running event loop (this runs its own).
        Any exception `pull` raises, after the context is closed.
    """
    files = Path(files_dir) if files_dir is not None else Path(tempfile.mkdtemp(prefix="osa-ing-"))
    files.mkdir(parents=True, exist_ok=True)
    name = str(getattr(ingester_cls, "name", None) or ingester_cls.__name__)
    runtime_config = getattr(ingester_cls, "RuntimeConfig", None)
    if config is not None and runtime_config is not None:
        ingester = ingester_cls(runtime_config(**config))
    else:
        ingester = ingester_cls()

    async def pull() -> list[IngesterRecord]:
        with tempfile.TemporaryDirectory(prefix="osa-ing-out-") as out:
            ctx = IngesterContext(files, out)
            try:
                return [
                    record
                    async for record in ingester.pull(
                        ctx=ctx, since=since, limit=limit, offset=0, session=session
                    )
                ]
            finally:
                await ctx.close()

    return IngesterResult(ingester_name=name, records=asyncio.run(pull()), files_dir=files)
