"""Loading convention packages through the `osa.conventions` entry-point group."""

from __future__ import annotations

import logging
import re
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from osa import _registry
from osa.errors import ConventionLoadError

#: The entry-point group convention packages declare (`pockets = "pockets.convention"`).
ENTRY_POINT_GROUP = "osa.conventions"

log = logging.getLogger("osa.discovery")

#: The distribution whose entry point registered each convention (by object id), as
#: `load_conventions` saw it.
_origins: dict[int, str] = {}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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
        before = len(_registry.conventions())
        try:
            ep.load()
        except Exception as e:
            log.debug("entry point %s = %s failed", ep.name, ep.value, exc_info=True)
            failures.append(f"{ep.name} = {ep.value}: {type(e).__name__}: {e}")
            continue
        loaded.append(ep.name)
        if ep.dist is not None:
            for conv in _registry.conventions()[before:]:
                _origins[id(conv)] = _normalize(ep.dist.name)
    if failures:
        raise ConventionLoadError(
            f"cannot load {len(failures)} convention package(s) of entry-point group "
            f"{group!r}:\n" + "\n".join(f"    - {f}" for f in failures),
            hint="Import the module by hand to see the full traceback.",
        )
    return loaded


def project_conventions(project_dir: Path) -> list[_registry.ConventionInfo] | None:
    """The registered conventions of the project in `project_dir`, if it is one.

    The project is the distribution its `pyproject.toml` names; its conventions are
    those its `osa.conventions` entry points registered (in `load_conventions`).
    `None` when the directory has no such project or the project registered none, in
    which case every registered convention is the caller's.
    """
    try:
        with (project_dir / "pyproject.toml").open("rb") as f:
            name = tomllib.load(f).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not isinstance(name, str):
        return None
    mine = [c for c in _registry.conventions() if _origins.get(id(c)) == _normalize(name)]
    return mine or None
