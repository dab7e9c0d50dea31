"""The commands that talk to a server: `deploy`, `link`, `login`, `logout`, `dashboard`.

The server is `--server`, else `OSA_SERVER`, else the project's `.osa/config.json`
(`osa.cli.link`); the token is `--token`, else `OSA_TOKEN`, else the stored login
(`osa.cli.credentials`).
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
import webbrowser
from pathlib import Path

from osa import _registry
from osa._discovery import load_conventions, project_conventions
from osa.cli.credentials import resolve_token_with_source
from osa.cli.deploy import deploy
from osa.cli.link import resolve_server, resolve_server_with_source, write_link
from osa.cli.login import login, store_token
from osa.cli.logout import logout
from osa.cli.ui import UI
from osa.errors import DeployError

__all__ = ["add_server_commands"]


def _ui(args: argparse.Namespace) -> UI:
    return UI.create(verbose=bool(getattr(args, "verbose", False)))


def _deploy(args: argparse.Namespace) -> int:
    ui = _ui(args)
    load_conventions()
    server, server_source = resolve_server_with_source(args.server)
    token, token_source = resolve_token_with_source(server, flag=args.token)
    if token is None:
        raise DeployError(
            "Not authenticated",
            hint=f"Run `osa login --server {server}`, pass --token, or set OSA_TOKEN.",
        )
    ui.heading(f"Deploying to {server} (from {server_source}, auth: {token_source})")
    if not _registry.conventions():
        raise DeployError(
            "no conventions registered",
            hint="Install the project (`pip install -e .`) so its `osa.conventions` entry "
            "point is found.",
        )
    # In a project directory, its own conventions; elsewhere, every installed one.
    project = Path.cwd()
    mine = project_conventions(project)
    deploy(
        server,
        project_dir=project,
        conventions=mine,
        token=token,
        registry=args.registry,
        skip_build=args.skip_build,
        ui=ui,
        process=args.process,
    )
    return 0


def _link(args: argparse.Namespace) -> int:
    path = write_link(args.server)
    _ui(args).success(f"Linked to {args.server.rstrip('/')} ({path})")
    return 0


def _login(args: argparse.Namespace) -> int:
    server = resolve_server(args.server)
    if args.token:
        store_token(server, args.token)
        _ui(args).success(f"Stored the token for {server}")
        return 0
    return 0 if login(server, ui=_ui(args), open_browser=not args.no_browser) else 1


def dashboard_url(server: str, token: str | None) -> str:
    """The server's web page, with `token` in the fragment (never sent to the server)."""
    url = f"{server}/dashboard"
    return f"{url}#token={urllib.parse.quote(token, safe='')}" if token else url


def _dashboard(args: argparse.Namespace) -> int:
    ui = _ui(args)
    server = resolve_server(args.server)
    token, _ = resolve_token_with_source(server, flag=args.token)
    if args.no_browser:
        print(dashboard_url(server, None))
        return 0
    ui.info(f"Opening {server}/dashboard" + (" (with the stored token)" if token else ""))
    if not webbrowser.open(dashboard_url(server, token)):
        ui.warning(f"no browser could be opened here: visit {server}/dashboard")
    return 0


def _logout(args: argparse.Namespace) -> int:
    logout(resolve_server(args.server), ui=_ui(args))
    return 0


def add_server_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `deploy`, `link`, `login`, `logout` and `dashboard` to the `osa` parser."""
    deploy_cmd = commands.add_parser(
        "deploy",
        help="build the project's hook images and register its conventions on a server",
        description="Runs the docs gate, checks the token on /auth/me, builds one image "
        "per hook and ingester from pyproject.toml (podman or docker), pushes them to "
        "--registry when given, and POSTs each convention.",
    )
    deploy_cmd.add_argument("--server", help="server URL (default: OSA_SERVER, .osa/config.json)")
    deploy_cmd.add_argument("--token", help="bearer token (default: OSA_TOKEN, stored login)")
    deploy_cmd.add_argument(
        "--registry",
        default=os.environ.get("OSA_REGISTRY") or None,
        help="push images to this registry (default: OSA_REGISTRY; none: local images)",
    )
    deploy_cmd.add_argument(
        "--skip-build",
        action="store_true",
        help="with --registry: use the images already there instead of building",
    )
    deploy_cmd.add_argument(
        "--process",
        action="store_true",
        help="no images: run the hooks as local processes of this interpreter (an OSA "
        "server on this machine; ingesters are left out)",
    )
    deploy_cmd.set_defaults(handler=_deploy)

    link_cmd = commands.add_parser("link", help="link this project to a server (.osa/config.json)")
    link_cmd.add_argument("--server", required=True, help="server URL")
    link_cmd.set_defaults(handler=_link)

    login_cmd = commands.add_parser(
        "login",
        help="log in to a server (device flow) or store a token",
        description="Runs the OAuth device flow against the server (RFC 8628) and stores "
        "the tokens in ~/.config/osa/credentials.json; --token stores a token instead.",
    )
    login_cmd.add_argument("--server", help="server URL (default: OSA_SERVER, .osa/config.json)")
    login_cmd.add_argument("--token", help="store this token instead of the device flow")
    login_cmd.add_argument(
        "--no-browser", action="store_true", help="print the URL without opening a browser"
    )
    login_cmd.set_defaults(handler=_login)

    logout_cmd = commands.add_parser("logout", help="forget the stored login of a server")
    logout_cmd.add_argument("--server", help="server URL (default: OSA_SERVER, .osa/config.json)")
    logout_cmd.set_defaults(handler=_logout)

    dashboard_cmd = commands.add_parser(
        "dashboard", help="open the server's web page (conventions, hooks, deployments)"
    )
    dashboard_cmd.add_argument(
        "--server", help="server URL (default: OSA_SERVER, .osa/config.json)"
    )
    dashboard_cmd.add_argument("--token", help="bearer token (default: OSA_TOKEN, stored login)")
    dashboard_cmd.add_argument(
        "--no-browser", action="store_true", help="print the page's URL instead of opening it"
    )
    dashboard_cmd.set_defaults(handler=_dashboard)
