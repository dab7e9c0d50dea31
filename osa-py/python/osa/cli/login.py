"""`osa login`: the OAuth 2.0 device authorization grant (RFC 8628) against a server.

The CLI asks `POST /api/v1/auth/device` for a device code, shows the verification URL
and user code (and tries to open a browser), then polls `POST /api/v1/auth/device/token`
until the user approves: `authorization_pending` waits `interval` seconds, `slow_down`
adds 5 seconds to it, `expired_token`, `access_denied` or any other error ends the
login, and server faults or network errors back off exponentially (at most 30 s) until
the code expires. The tokens are stored (`osa.cli.credentials`) and the project is
linked to the server (`osa.cli.link`).

A server that does not offer the device flow answers 404 on the first request; the
hint then points at `osa login --token`, which stores a token obtained elsewhere.
"""

from __future__ import annotations

import time
import webbrowser
from pathlib import Path
from typing import Any

import httpx

from osa.cli._http import json_object
from osa.cli.credentials import write_credentials
from osa.cli.link import normalize_server, write_link
from osa.cli.ui import UI
from osa.errors import OsaError

__all__ = ["DEVICE_GRANT", "LoginError", "login", "store_token"]

#: The `grant_type` of a device token request.
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: Seconds added to the polling interval on `slow_down`.
SLOW_DOWN_STEP_S = 5
#: The longest wait between two polls after a failure.
MAX_BACKOFF_S = 30.0
#: Seconds one request may take.
REQUEST_TIMEOUT_S = 15.0


class LoginError(OsaError):
    """A login could not start or did not finish."""


def _error_code(resp: httpx.Response) -> str | None:
    body = json_object(resp)
    if body is None:
        return None
    code = body.get("error")
    if code is None and isinstance(body.get("detail"), dict):
        code = body["detail"].get("code")
    return code if isinstance(code, str) else None


def _poll_for_token(
    *,
    client: Any,
    server: str,
    device_code: str,
    interval: float,
    expires_in: float,
) -> dict[str, Any] | None:
    """Polls for the tokens of an approved device code.

    Returns `None` when the login ends without them (denied, expired, timed out).
    """
    url = f"{normalize_server(server)}/api/v1/auth/device/token"
    deadline = time.monotonic() + expires_in
    wait = max(float(interval), 0.0)
    backoff = max(wait, 1.0)
    while time.monotonic() < deadline:
        try:
            resp = client.post(
                url,
                json={"device_code": device_code, "grant_type": DEVICE_GRANT},
                timeout=REQUEST_TIMEOUT_S,
            )
        except httpx.HTTPError:
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        if resp.status_code == 200:
            body = resp.json()
            return body if isinstance(body, dict) and "access_token" in body else None
        if resp.status_code >= 500:
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        code = _error_code(resp)
        if code == "authorization_pending":
            time.sleep(wait)
        elif code == "slow_down":
            wait += SLOW_DOWN_STEP_S
            time.sleep(wait)
        else:
            return None
    return None


def store_token(
    server: str,
    token: str,
    *,
    refresh_token: str = "",
    cred_path: Path | None = None,
    project_dir: Path | None = None,
) -> None:
    """Stores a token obtained elsewhere for `server` and links the project to it."""
    write_credentials(server, access_token=token, refresh_token=refresh_token, path=cred_path)
    write_link(server, project_dir=project_dir)


def login(
    server: str,
    *,
    cred_path: Path | None = None,
    project_dir: Path | None = None,
    ui: UI | None = None,
    open_browser: bool = True,
) -> bool:
    """Logs in to `server` with the device flow; `True` when tokens were stored.

    Raises:
        LoginError: the server does not offer the device flow or cannot be reached.
    """
    out = UI.create() if ui is None else ui
    base = normalize_server(server)
    with httpx.Client() as client:
        try:
            resp = client.post(f"{base}/api/v1/auth/device", timeout=REQUEST_TIMEOUT_S)
        except httpx.HTTPError as e:
            raise LoginError(f"Could not reach {base}: {e}") from e
        if resp.status_code in (404, 405):
            raise LoginError(
                f"{base} does not offer the device login",
                hint=f"Get a token from the server's operator and run "
                f"`osa login --server {base} --token TOKEN`.",
            )
        if resp.status_code != 200:
            raise LoginError(f"Login could not start ({resp.status_code})", hint=resp.text[:500])
        grant = resp.json()
        uri = grant.get("verification_uri_complete") or grant["verification_uri"]
        out.heading(f"Open {uri}")
        out.info(f"and enter the code {grant['user_code']}")
        if open_browser:
            try:
                webbrowser.open(str(uri))
            except Exception:
                out.detail("(no browser could be opened here)")
        tokens = _poll_for_token(
            client=client,
            server=base,
            device_code=str(grant["device_code"]),
            interval=float(grant.get("interval", 5)),
            expires_in=float(grant.get("expires_in", 600)),
        )
    if tokens is None:
        out.error("Login did not complete", hint="Run `osa login` again.")
        return False
    store_token(
        base,
        str(tokens["access_token"]),
        refresh_token=str(tokens.get("refresh_token") or ""),
        cred_path=cred_path,
        project_dir=project_dir,
    )
    out.success(f"Logged in to {base}")
    return True
