"""Container runtime: `osa-run-hook` and the helpers ingesters use.

The names are imported on first access: releases run the hook entrypoint as
`python -m osa.runtime.entrypoint`, and a package that imported the module itself
would make `runpy` warn (`RuntimeWarning: 'osa.runtime.entrypoint' found in
sys.modules ...`) at the start of every hook log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from osa.runtime.entrypoint import run_hook_entrypoint
    from osa.runtime.ingester_context import IngesterContext
    from osa.runtime.logging import setup_logging

__all__ = ["IngesterContext", "run_hook_entrypoint", "setup_logging"]

_MODULES = {
    "IngesterContext": "osa.runtime.ingester_context",
    "run_hook_entrypoint": "osa.runtime.entrypoint",
    "setup_logging": "osa.runtime.logging",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
