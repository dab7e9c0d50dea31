"""Resource limits and the ingester data models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField


class Limits(BaseModel):
    """Resource limits of one hook (or ingester) execution.

    Attributes:
        timeout_seconds: wall-clock limit in seconds.
        memory: memory limit, Docker style (`512m`, `1g`).
        cpu: cpu quota (`0.5` = half a core).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_seconds: int = 300
    memory: str = "512m"
    cpu: str = "0.5"


class IngesterFileRef(BaseModel):
    """A file an ingester stored for a record (under `$OSA_FILES`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    relative_path: str
    size_mb: float


class IngesterRecord(BaseModel):
    """One record pulled by an ingester."""

    model_config = ConfigDict(frozen=True)

    source_id: str
    metadata: dict[str, Any]
    files: list[IngesterFileRef] = PydanticField(default_factory=list)
    fetched_at: datetime | None = None


class IngesterSchedule(BaseModel):
    """When an ingester runs: a cron expression and an optional record limit."""

    model_config = ConfigDict(frozen=True)

    cron: str
    limit: int | None = None


class InitialRun(BaseModel):
    """An ingester's first run after deploy."""

    model_config = ConfigDict(frozen=True)

    limit: int | None = None
