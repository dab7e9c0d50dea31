"""What the CLI's HTTP clients share: reading a JSON object from an answer."""

from __future__ import annotations

from typing import Any

__all__ = ["json_object"]


def json_object(response: Any) -> dict[str, Any] | None:
    """The answer's body as a JSON object, or `None` (not JSON, or not an object)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
