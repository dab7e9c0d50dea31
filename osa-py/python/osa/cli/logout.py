"""`osa logout`: forgets the stored login of a server."""

from __future__ import annotations

from pathlib import Path

from osa.cli.credentials import remove_credentials
from osa.cli.ui import UI

__all__ = ["logout"]


def logout(server: str, *, cred_path: Path | None = None, ui: UI | None = None) -> bool:
    """Removes the credentials stored for `server`; `False` when there were none."""
    out = UI.create() if ui is None else ui
    if remove_credentials(server, path=cred_path):
        out.success(f"Logged out of {server}")
        return True
    out.info(f"No credentials found for {server}")
    return False
