"""The OSA server program, shipped in this wheel: `osa-server` and `python -m osa.server`.

It is the same program as the `osa-server` binary (the Rust server, linked into
`osa._native`): `serve`, `worker`, `migrate` and `token`, configured by a TOML file and
`OSA_<SECTION>__<KEY>` variables; with no configuration it serves an embedded archive
(SQLite, local blobs, hooks as local processes) in `./osa-archive`. `osa start` runs it
in the background for a project.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from osa import _native

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server program with `argv` (default: this process's arguments)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return _native.server_main(["osa-server", *args])


if __name__ == "__main__":
    sys.exit(main())
