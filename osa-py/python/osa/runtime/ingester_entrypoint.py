"""`osa-run-ingester`: the ingester container entrypoint.

Inputs: `$OSA_IN/config.json` (optional: the ingester's configuration, validated with
its `RuntimeConfig` when it has one) and `$OSA_IN/session.json` (optional: state the
previous run left); `OSA_SINCE` (ISO 8601), `OSA_LIMIT` and `OSA_OFFSET` in the
environment. Outputs: `$OSA_OUT/records.jsonl` (one `IngesterRecord` per line),
`$OSA_OUT/session.json` when the ingester set one, and the records' files under
`$OSA_FILES/<record dir>/`.

The ingester is the one named by `OSA_INGESTER_NAME`, else the first registered. A
record listing a file larger than the ingester's `max_file_mb` is skipped and the
oversized files it listed are deleted.

Exit codes: 0 when the pull finished; 1 when no ingester is registered, the inputs are
unreadable or invalid, or the pull raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel

from osa import _registry
from osa._discovery import load_conventions
from osa.errors import ConventionLoadError, OsaError
from osa.runtime.ingester_context import IngesterContext
from osa.runtime.logging import setup_logging
from osa.types.ingester import IngesterRecord

log = logging.getLogger("osa.ingester.entrypoint")

#: Exit code of a finished pull.
EXIT_OK = 0
#: Exit code of a failed pull or unusable inputs.
EXIT_FAILURE = 1


class IngesterInputError(OsaError):
    """The ingester's inputs (config, environment) are unusable."""


def instantiate(cls: type, config: dict[str, Any] | None) -> Any:
    """Instantiates an ingester class with its configuration.

    `cls(RuntimeConfig(**config))` when both exist, `cls(config)` for a class without
    `RuntimeConfig`, else `cls()`.

    Raises:
        IngesterInputError: the configuration does not validate.
    """
    if config is None:
        return cls()
    runtime_config = getattr(cls, "RuntimeConfig", None)
    if isinstance(runtime_config, type) and issubclass(runtime_config, BaseModel):
        try:
            return cls(runtime_config(**config))
        except pydantic.ValidationError as e:
            raise IngesterInputError(f"config.json does not fit RuntimeConfig: {e}") from e
    return cls(config)


def resolve_ingester(name: str | None) -> _registry.IngesterInfo:
    """The ingester called `name`, or the first registered.

    Raises:
        IngesterInputError: none is registered, or none has that name.
    """
    registered = _registry.ingesters()
    if not registered:
        raise IngesterInputError("no ingester is registered")
    if not name:
        return registered[0]
    for info in registered:
        if info.name == name:
            return info
    known = ", ".join(i.name for i in registered)
    raise IngesterInputError(f"no registered ingester is called {name!r} (registered: {known})")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise IngesterInputError(f"cannot read {path}: {e}") from e


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as e:
        raise IngesterInputError(f"{name}={value!r} is not an integer") from e


def _env_since() -> datetime | None:
    value = os.environ.get("OSA_SINCE")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as e:
        raise IngesterInputError(f"OSA_SINCE={value!r} is not an ISO 8601 time") from e


def _oversized(record: IngesterRecord, max_file_mb: float | None) -> list[str]:
    if max_file_mb is None:
        return []
    return [f.relative_path for f in record.files if f.size_mb > max_file_mb]


async def pull_to_files(
    info: _registry.IngesterInfo,
    *,
    input_dir: Path,
    output_dir: Path,
    files_dir: Path,
) -> int:
    """Runs one pull and writes its outputs; returns the number of records written.

    Raises:
        IngesterInputError: unusable inputs.
        Exception: whatever the ingester's `pull` raised.
    """
    config_path = input_dir / "config.json"
    config = _read_json(config_path) if config_path.exists() else None
    if config is not None and not isinstance(config, dict):
        raise IngesterInputError(f"{config_path} must hold a JSON object")
    session_path = input_dir / "session.json"
    session = None
    if session_path.exists():
        try:
            loaded = _read_json(session_path)
            session = loaded if isinstance(loaded, dict) else None
        except IngesterInputError as e:
            log.warning("ignoring the previous session: %s", e)
    since, limit, offset = _env_since(), _env_int("OSA_LIMIT", None), _env_int("OSA_OFFSET", 0)
    ingester = instantiate(info.ingester_cls, config)
    files_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = IngesterContext(files_dir, output_dir)
    written = 0
    try:
        with (output_dir / "records.jsonl").open("w", encoding="utf-8") as out:
            async for record in ingester.pull(
                ctx=ctx, since=since, limit=limit, offset=offset or 0, session=session
            ):
                too_big = _oversized(record, info.max_file_mb)
                if too_big:
                    for relative in too_big:
                        (files_dir / relative).unlink(missing_ok=True)
                    log.warning(
                        "record %s skipped: files over %s MB: %s",
                        record.source_id,
                        info.max_file_mb,
                        ", ".join(too_big),
                    )
                    continue
                out.write(record.model_dump_json() + "\n")
                written += 1
        ctx.write_session()
    finally:
        await ctx.close()
    return written


def run_ingester_entrypoint(
    *,
    input_dir: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    files_dir: str | os.PathLike[str] | None = None,
    ingester_name: str | None = None,
) -> int:
    """Runs the ingester once with the batch contract's directories.

    Directories default to `$OSA_IN`/`$OSA_OUT`/`$OSA_FILES`, then `/osa/...`. Returns
    the exit code.
    """

    def where(explicit: str | os.PathLike[str] | None, env: str, default: str) -> Path:
        return Path(explicit) if explicit is not None else Path(os.environ.get(env) or default)

    try:
        info = resolve_ingester(ingester_name or os.environ.get("OSA_INGESTER_NAME"))
        log.info("INGESTER START %s", info.name)
        count = asyncio.run(
            pull_to_files(
                info,
                input_dir=where(input_dir, "OSA_IN", "/osa/in"),
                output_dir=where(output_dir, "OSA_OUT", "/osa/out"),
                files_dir=where(files_dir, "OSA_FILES", "/osa/files"),
            )
        )
    except IngesterInputError as e:
        log.error("%s", e)
        return EXIT_FAILURE
    except Exception:
        log.exception("INGESTER FAILED")
        return EXIT_FAILURE
    log.info("INGESTER DONE %d records", count)
    return EXIT_OK


def main() -> None:
    """Console script `osa-run-ingester`."""
    setup_logging()
    try:
        load_conventions()
    except ConventionLoadError as e:
        log.error("%s", e)
        sys.exit(EXIT_FAILURE)
    sys.exit(run_ingester_entrypoint())


if __name__ == "__main__":
    main()
