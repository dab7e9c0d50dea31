"""The published SDK's module path of the container helper commands.

The same functions as `osa.cli.runtime_commands`.
"""

from osa.cli.runtime_commands import (
    emit_command,
    meta_command,
    progress_command,
    reject_command,
)

__all__ = ["emit_command", "meta_command", "progress_command", "reject_command"]
