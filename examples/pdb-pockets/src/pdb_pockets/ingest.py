"""The convention's ingester: structures from a local mirror of PDB entries.

A mirror is a directory in the hook batch layout: `in/records.jsonl` (one
`{"id", "metadata"}` per line) and each entry's files under
`files/<id with ':' -> '_'>/`. The package ships the five synthetic sample entries as
its default mirror, so `osa test` has records to validate without a network; an archive
points `mirror` at its own copy of the PDB.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from osa import IngesterContext, IngesterRecord, IngesterSchedule, InitialRun, Limits
from pydantic import BaseModel

#: The mirror bundled with the package.
SAMPLES = Path(__file__).resolve().parent / "samples"


def record_dir(source_id: str) -> str:
    """The directory of an entry's files: its id with ':' replaced by '_'."""
    return source_id.replace(":", "_")


class StructureMirror:
    """Pulls PDB entries from a mirror directory, oldest deposition first.

    `since` keeps entries deposited on or after its date; the session remembers the
    last entry pulled, and the next pull starts after it.
    """

    name = "pdb_mirror"
    schedule = IngesterSchedule(cron="0 3 * * *", limit=500)
    initial_run = InitialRun(limit=5)
    limits = Limits(timeout_seconds=600, memory="512m", cpu="0.5")
    max_file_mb = 50

    class RuntimeConfig(BaseModel):
        """Where the mirror is (default: the samples bundled with the package)."""

        mirror: str | None = None

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        mirror = config.mirror if config is not None else None
        self.mirror = Path(mirror) if mirror else SAMPLES

    def entries(self) -> list[dict[str, Any]]:
        """The mirror's entries, by deposition date then id."""
        text = (self.mirror / "in" / "records.jsonl").read_text(encoding="utf-8")
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return sorted(entries, key=lambda e: (e["metadata"]["deposition_date"], e["id"]))

    async def pull(
        self,
        *,
        ctx: IngesterContext,
        since: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
        session: dict[str, Any] | None = None,
    ) -> AsyncIterator[IngesterRecord]:
        """Yields the entries after the session's last one, from `offset`, at most `limit`."""
        entries = self.entries()
        if session and "after" in session:
            after = tuple(session["after"])
            entries = [e for e in entries if (e["metadata"]["deposition_date"], e["id"]) > after]
        if since is not None:
            entries = [
                e
                for e in entries
                if date.fromisoformat(e["metadata"]["deposition_date"]) >= since.date()
            ]
        entries = entries[offset:]
        if limit is not None:
            entries = entries[:limit]
        for entry in entries:
            source_id = entry["id"]
            directory = self.mirror / "files" / record_dir(source_id)
            files = []
            if directory.is_dir():
                for path in sorted(directory.iterdir()):
                    files.append(await ctx.add_bytes(source_id, path.name, data=path.read_bytes()))
            # The session is written only when the whole pull succeeds.
            ctx.set_session({"after": [entry["metadata"]["deposition_date"], source_id]})
            yield IngesterRecord(source_id=source_id, metadata=entry["metadata"], files=files)
