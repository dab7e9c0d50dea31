"""Stored logins: `~/.config/osa/credentials.json`, one entry per server.

The file is a JSON object keyed by server URL (trailing slashes removed), each value
`{"access_token", "refresh_token"}`; it is written with mode 0600 (a directory it
creates, 0700) and replaced atomically. A token is resolved as: `--token`, then
`OSA_TOKEN`, then the stored login (refreshed first through
`POST /api/v1/auth/refresh` when the server offers it, the stored access token
otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from osa.cli._http import json_object
from osa.cli.link import normalize_server

__all__ = [
    "DEFAULT_PATH",
    "REFRESH_TIMEOUT_S",
    "credentials_path",
    "read_credentials",
    "refresh_access_token",
    "remove_credentials",
    "resolve_token",
    "resolve_token_with_source",
    "write_credentials",
]

#: Where logins are stored unless `OSA_CREDENTIALS` names another file.
DEFAULT_PATH = Path("~/.config/osa/credentials.json")
#: Seconds a refresh may take before the stored token is used as is.
REFRESH_TIMEOUT_S = 10.0


def credentials_path(path: Path | None = None) -> Path:
    """The credentials file: `path`, else `$OSA_CREDENTIALS`, else `DEFAULT_PATH`."""
    if path is not None:
        return path
    env = os.environ.get("OSA_CREDENTIALS")
    return Path(env) if env else DEFAULT_PATH.expanduser()


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(path: Path, data: dict[str, Any]) -> None:
    # A directory made here is the owner's alone, as the file is.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_credentials(
    server: str, *, access_token: str, refresh_token: str, path: Path | None = None
) -> Path:
    """Stores the tokens of `server` (other servers' entries are kept); returns the file."""
    file = credentials_path(path)
    data = _load(file)
    data[normalize_server(server)] = {"access_token": access_token, "refresh_token": refresh_token}
    _store(file, data)
    return file


def read_credentials(server: str, *, path: Path | None = None) -> dict[str, str] | None:
    """The stored `{"access_token", "refresh_token"}` of `server`, or `None`."""
    entry = _load(credentials_path(path)).get(normalize_server(server))
    if not isinstance(entry, dict) or not isinstance(entry.get("access_token"), str):
        return None
    return {
        "access_token": entry["access_token"],
        "refresh_token": str(entry.get("refresh_token") or ""),
    }


def remove_credentials(server: str, *, path: Path | None = None) -> bool:
    """Forgets the login of `server`; `False` when there was none."""
    file = credentials_path(path)
    data = _load(file)
    if data.pop(normalize_server(server), None) is None:
        return False
    _store(file, data)
    return True


def refresh_access_token(server: str, *, path: Path | None = None) -> str | None:
    """Trades the stored refresh token for new tokens, stores and returns the access token.

    `None` (nothing changed) when there is no stored login, the server refuses, does not
    offer refresh, or cannot be reached.
    """
    creds = read_credentials(server, path=path)
    if creds is None or not creds["refresh_token"]:
        return None
    try:
        resp = httpx.post(
            f"{normalize_server(server)}/api/v1/auth/refresh",
            json={"refresh_token": creds["refresh_token"]},
            timeout=REFRESH_TIMEOUT_S,
        )
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    body = json_object(resp)
    access = body.get("access_token") if body is not None else None
    if not isinstance(access, str) or not access:
        return None
    refresh = body.get("refresh_token") if body is not None else None
    write_credentials(
        server,
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) else creds["refresh_token"],
        path=path,
    )
    return access


def resolve_token_with_source(
    server: str, *, flag: str | None = None, path: Path | None = None
) -> tuple[str | None, str | None]:
    """The token to send to `server` and where it came from, or `(None, None)`.

    The source is `--token flag`, `OSA_TOKEN env` or `stored login`.
    """
    if flag:
        return flag, "--token flag"
    env = os.environ.get("OSA_TOKEN")
    if env:
        return env, "OSA_TOKEN env"
    creds = read_credentials(server, path=path)
    if creds is None:
        return None, None
    refreshed = refresh_access_token(server, path=path)
    return (refreshed or creds["access_token"]), "stored login"


def resolve_token(server: str, *, path: Path | None = None) -> str | None:
    """The token for `server`: `OSA_TOKEN`, else the stored login (refreshed when possible)."""
    return resolve_token_with_source(server, path=path)[0]
