"""`IngesterContext`: where an ingester stores files and session state."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from osa import _native
from osa.types.ingester import IngesterFileRef

_MB = 2**20


class IngesterContext:
    """File and session helper handed to `Ingester.pull`.

    Files go to `<files_dir>/<record dir>/<name>`, where the record dir is the source id
    mapped like the engine maps record ids (`osa._native.record_dir_name`).
    """

    def __init__(self, files_dir: str | Path, output_dir: str | Path) -> None:
        self.files_dir = Path(files_dir)
        self.output_dir = Path(output_dir)
        self._session: dict[str, Any] | None = None

    def _target(self, source_id: str, name: str) -> tuple[Path, str]:
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(f"invalid file name {name!r}: a plain file name is expected")
        directory = _native.record_dir_name(source_id)
        path = self.files_dir / directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, f"{directory}/{name}"

    async def add_bytes(self, source_id: str, name: str, *, data: bytes) -> IngesterFileRef:
        """Stores `data` as file `name` of record `source_id`."""
        import asyncio  # imported lazily: hooks never need it (~70 ms at import)

        path, relative = self._target(source_id, name)
        await asyncio.to_thread(path.write_bytes, data)
        return IngesterFileRef(name=name, relative_path=relative, size_mb=len(data) / _MB)

    async def add_file(self, source_id: str, name: str, *, url: str) -> IngesterFileRef:
        """Downloads `url` (streamed) as file `name` of record `source_id`.

        A download that fails leaves no file behind (a partial one is removed).

        Raises:
            urllib.error.URLError: the request failed (HTTP errors included, as
                `urllib.error.HTTPError`).
            http.client.HTTPException: the response ended early or was malformed.
        """
        import asyncio
        import http.client
        import urllib.request  # imported lazily: hooks never need it (~25 ms at import)

        path, relative = self._target(source_id, name)

        def download() -> int:
            try:
                with urllib.request.urlopen(url, timeout=300) as response, path.open("wb") as out:
                    shutil.copyfileobj(response, out, length=1 << 20)
                    # Reading in chunks, urllib ends quietly at a connection closed early.
                    announced = response.headers.get("Content-Length", "")
                    if announced.isdigit() and int(announced) != out.tell():
                        raise http.client.IncompleteRead(b"", int(announced) - out.tell())
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return path.stat().st_size

        size = await asyncio.to_thread(download)
        return IngesterFileRef(name=name, relative_path=relative, size_mb=size / _MB)

    def set_session(self, session: dict[str, Any]) -> None:
        """Remembers state for the next run (written by `write_session`)."""
        self._session = dict(session)

    def write_session(self) -> None:
        """Writes `<output_dir>/session.json` when a session was set."""
        if self._session is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "session.json").write_text(json.dumps(self._session))

    async def close(self) -> None:
        """Releases resources (nothing is held between calls today)."""
