"""Container runtime: `osa-run-hook` and the helpers ingesters use."""

from osa.runtime.entrypoint import run_hook_entrypoint
from osa.runtime.ingester_context import IngesterContext
from osa.runtime.logging import setup_logging

__all__ = ["IngesterContext", "run_hook_entrypoint", "setup_logging"]
