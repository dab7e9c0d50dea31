"""Which server a project talks to: `--server`, then `OSA_SERVER`, then `.osa/config.json`.

`osa link --server URL` writes `.osa/config.json` (`{"server": URL}`) in the project
directory; `osa login` writes it too after a successful login.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = [
    "CONFIG_FILE",
    "normalize_server",
    "read_link",
    "resolve_server",
    "resolve_server_with_source",
    "write_link",
]

#: The link file, relative to the project directory.
CONFIG_FILE = Path(".osa") / "config.json"


def normalize_server(url: str) -> str:
    """`url` without trailing slashes (the key credentials and links use)."""
    return url.strip().rstrip("/")


def write_link(server: str, *, project_dir: Path | None = None) -> Path:
    """Links the project to `server`; returns the path of the link file."""
    path = (Path.cwd() if project_dir is None else project_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"server": normalize_server(server)}) + "\n", encoding="utf-8")
    return path


def read_link(*, project_dir: Path | None = None) -> str | None:
    """The server the project is linked to, or `None` (no file, bad JSON, no server)."""
    path = (Path.cwd() if project_dir is None else project_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    server = data.get("server") if isinstance(data, dict) else None
    if not isinstance(server, str) or not normalize_server(server):
        return None
    return normalize_server(server)


def resolve_server_with_source(
    flag: str | None = None, *, project_dir: Path | None = None
) -> tuple[str, str]:
    """The server to use and where it came from.

    The source is `--server flag`, `OSA_SERVER env` or `.osa/config.json`. Exits
    with status 1, after a message on stderr, when none of them names a server.
    """
    if flag:
        return normalize_server(flag), "--server flag"
    env = os.environ.get("OSA_SERVER")
    if env and normalize_server(env):
        return normalize_server(env), "OSA_SERVER env"
    linked = read_link(project_dir=project_dir)
    if linked is not None:
        return linked, str(CONFIG_FILE)
    print(
        "error: no server given\n"
        "hint: pass --server URL, set OSA_SERVER, or run `osa link --server URL` "
        "(`osa start` runs one on this machine).",
        file=sys.stderr,
    )
    sys.exit(1)


def resolve_server(flag: str | None = None, *, project_dir: Path | None = None) -> str:
    """The server to use (see `resolve_server_with_source`)."""
    return resolve_server_with_source(flag, project_dir=project_dir)[0]
