"""Logging of the container entrypoints."""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)-8s [%(name)s] %(message)s"
_configured = False


def setup_logging() -> None:
    """Logs to stderr at `OSA_LOG_LEVEL` (default INFO); idempotent."""
    global _configured
    if _configured:
        return
    level_name = os.environ.get("OSA_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True
