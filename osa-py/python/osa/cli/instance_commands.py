"""The commands of a project's local server: `init`, `start`, `stop`, `status`, `logs`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from osa.cli.instance import (
    init_project,
    instance_logs,
    instance_status,
    start_instance,
    status_json,
    stop_instance,
)
from osa.cli.ui import UI

__all__ = ["add_instance_commands"]


def _init(args: argparse.Namespace) -> int:
    ui = UI.create()
    target = Path(args.directory) if args.directory else None
    project, created = init_project(target, name=args.name, force=args.force)
    ui.success(f"Initialised {project} ({', '.join(created) or 'nothing new'})")
    if target is not None and project != Path.cwd().resolve():
        ui.detail(f"cd {os.path.relpath(project)} && osa start")
    else:
        ui.detail("osa start")
    return 0


def _start(args: argparse.Namespace) -> int:
    start_instance(port=args.port, detach=args.detach, ui=UI.create())
    return 0


def _stop(args: argparse.Namespace) -> int:
    stop_instance(ui=UI.create())
    return 0


def _status(args: argparse.Namespace) -> int:
    status = instance_status(port=args.port)
    if args.json:
        print(status_json(status))
    else:
        state = "running" if status.running else "stopped"
        if status.running and not status.healthy:
            state = "running, not answering"
        print(f"server   {state}")
        print(f"url      {status.url}")
        print(f"pid      {status.pid if status.pid is not None else '-'}")
        print(f"archive  {status.archive}")
    return 0 if status.running else 1


def _logs(args: argparse.Namespace) -> int:
    for line in instance_logs(tail=args.tail, follow=args.follow):
        print(line, flush=True)
    return 0


def add_instance_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `init`, `start`, `stop`, `status` and `logs` to the `osa` parser."""
    init = commands.add_parser(
        "init", help="set a directory up for a local server (osa.yaml, .data/, .osa/)"
    )
    init.add_argument("directory", nargs="?", help="the project directory (default: here)")
    init.add_argument("--name", help="the project's name (default: the directory's)")
    init.add_argument("--force", action="store_true", help="write osa.yaml again")
    init.set_defaults(handler=_init)

    start = commands.add_parser(
        "start",
        help="run OSA's server for this project, from this wheel (no Docker)",
        description="Starts `python -m osa.server serve` with an embedded archive under "
        ".data/, waits until it answers, stores a dev admin token for it and links the "
        "project to it.",
    )
    start.add_argument(
        "-d",
        "--detach",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run in the background (default; --no-detach runs in the foreground)",
    )
    start.add_argument("--port", type=int, help="port on 127.0.0.1 (default: osa.yaml, 8000)")
    start.set_defaults(handler=_start)

    stop = commands.add_parser("stop", help="stop this project's local server")
    stop.set_defaults(handler=_stop)

    status = commands.add_parser("status", help="whether this project's local server runs")
    status.add_argument("--port", type=int, help="port on 127.0.0.1 (default: osa.yaml, 8000)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    logs = commands.add_parser("logs", help="print the local server's log")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=int, help="only the last N lines")
    logs.set_defaults(handler=_logs)
