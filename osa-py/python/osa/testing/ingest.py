"""`run_ingester`: pull records with an ingester class in this process."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from osa.runtime.ingester_context import IngesterContext
from osa.types.ingester import IngesterRecord


@dataclass(frozen=True)
class IngesterResult:
    """What an ingester pulled: its name, the records and where their files are."""

    ingester_name: str
    records: list[IngesterRecord]
    files_dir: Path


def run_ingester(
    cls: type,
    *,
    limit: int | None = None,
    config: dict[str, Any] | None = None,
    since: datetime | None = None,
    session: dict[str, Any] | None = None,
    files_dir: str | Path | None = None,
) -> IngesterResult:
    """Runs `cls.pull(...)` and collects every record it yields.

    The ingester is `cls(cls.RuntimeConfig(**config))` when `config` is given and the
    class has a `RuntimeConfig`, else `cls()` (a `config` is then ignored); an invalid
    `config` raises pydantic's `ValidationError`. Files go to `files_dir` (created), or
    to a new temporary directory that is kept so the caller can read them.
    """
    files = Path(files_dir) if files_dir is not None else Path(tempfile.mkdtemp(prefix="osa-ing-"))
    files.mkdir(parents=True, exist_ok=True)
    name = str(getattr(cls, "name", None) or cls.__name__)
    runtime_config = getattr(cls, "RuntimeConfig", None)
    if config is not None and runtime_config is not None:
        ingester = cls(runtime_config(**config))
    else:
        ingester = cls()

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
