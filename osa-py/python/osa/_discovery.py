"""Loading convention packages through the `osa.conventions` entry-point group."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from osa.errors import ConventionLoadError

#: The entry-point group convention packages declare (`pockets = "pockets.convention"`).
ENTRY_POINT_GROUP = "osa.conventions"

log = logging.getLogger("osa.discovery")


def convention_entry_points(group: str = ENTRY_POINT_GROUP) -> list[EntryPoint]:
    """The entry points of `group`, deduplicated, sorted by name for a stable order."""
    seen: dict[tuple[str, str], EntryPoint] = {}
    for ep in entry_points(group=group):
        seen.setdefault((ep.name, ep.value), ep)
    return sorted(seen.values(), key=lambda ep: (ep.name, ep.value))


def load_conventions(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Imports every convention package of `group` (both `module` and `module:attr`).

    Importing runs the packages' `@hook` and `convention(...)` calls. Returns the names
    of the entry points loaded.

    Raises:
        ConventionLoadError: one or more entry points failed to load; the message names
            each with its error.
    """
    loaded: list[str] = []
    failures: list[str] = []
    for ep in convention_entry_points(group):
        try:
            ep.load()
        except Exception as e:
            log.debug("entry point %s = %s failed", ep.name, ep.value, exc_info=True)
            failures.append(f"{ep.name} = {ep.value}: {type(e).__name__}: {e}")
            continue
        loaded.append(ep.name)
    if failures:
        raise ConventionLoadError(
            f"cannot load {len(failures)} convention package(s) of entry-point group "
            f"{group!r}:\n" + "\n".join(f"    - {f}" for f in failures),
            hint="Import the module by hand to see the full traceback.",
        )
    return loaded
