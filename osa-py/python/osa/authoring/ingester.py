"""The `Ingester` protocol: classes that pull records from an upstream source."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from osa.types.ingester import IngesterRecord, IngesterSchedule, InitialRun, Limits

if TYPE_CHECKING:
    from osa.runtime.ingester_context import IngesterContext


class Ingester(Protocol):
    """Structural type of an ingester class.

    Class attributes: `name`, `schedule`, `initial_run`, `max_file_mb`, optionally
    `limits` and a nested pydantic `RuntimeConfig`. `pull` is an async generator of
    `IngesterRecord`s.
    """

    name: ClassVar[str]
    schedule: ClassVar[IngesterSchedule | None]
    initial_run: ClassVar[InitialRun | None]
    max_file_mb: ClassVar[float | None]
    limits: ClassVar[Limits]

    def pull(
        self,
        *,
        ctx: IngesterContext,
        since: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        session: dict[str, Any] | None = None,
    ) -> AsyncIterator[IngesterRecord]:
        """Yields the records of the source, newest last."""
        ...
