"""A local OSA server for a project: `osa init`, `osa start`, `stop`, `status`, `logs`.

`osa start` runs the server shipped in this wheel (`python -m osa.server serve`, the
Rust server linked into `osa._native`) in the background, with no Docker and no
configuration: an embedded archive (SQLite, local blobs, hooks as local processes of
this machine) under the project's `.data/`. What it keeps in the project:

| path | what |
|---|---|
| `osa.yaml` | the project's name and the server's port (`osa init`; optional) |
| `.data/osa-archive/` | the archive: database, blobs, work directories, node secret |
| `.osa/server.pid` | the running server's process id |
| `.osa/server.log` | its output (`osa logs`) |
| `.osa/config.json` | the link to `http://127.0.0.1:<port>` (`osa.cli.link`) |

Once the server answers, `osa start` mints an admin token with the server's own
`token` command (a year long, signed by the archive's node secret) and stores it as the
login of that URL (`~/.config/osa/credentials.json`, refresh token `dev-no-refresh`),
so `osa deploy` and `osa test` work against it at once. `osa stop` sends SIGTERM (the
server finishes what it runs and exits), then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from osa.cli.credentials import write_credentials
from osa.cli.link import write_link
from osa.cli.ui import UI
from osa.errors import OsaError

__all__ = [
    "DEFAULT_PORT",
    "DEV_REFRESH_TOKEN",
    "InstanceError",
    "InstanceStatus",
    "init_project",
    "instance_logs",
    "instance_status",
    "start_instance",
    "stop_instance",
]

#: The port `osa start` serves on unless `osa.yaml` or `--port` says otherwise.
DEFAULT_PORT = 8000
#: The refresh token stored with the dev token (the local server has no refresh).
DEV_REFRESH_TOKEN = "dev-no-refresh"
#: Seconds `osa start` waits for the server to answer.
START_TIMEOUT_S = 60.0
#: Seconds `osa stop` waits after SIGTERM before SIGKILL.
STOP_GRACE_S = 30.0
#: Lifetime of the dev token.
DEV_TOKEN_TTL = "365d"
#: Subject of the dev token (what audit rows record for the local author).
DEV_SUBJECT = "dev-admin"
#: Lines of the log shown when the server fails to start.
LOG_TAIL_ON_FAILURE = 30

_DATA_DIR = ".data"
_STATE_DIR = ".osa"
_GITIGNORE_LINES = (".data/", ".osa/")
_NAME_LINE = re.compile(r'^name:\s*"?([^"\n]*)"?\s*$', re.MULTILINE)
_PORT_LINE = re.compile(r"^port:\s*(\d+)\s*$", re.MULTILINE)


class InstanceError(OsaError):
    """The local server cannot be set up, started, stopped or read."""


@dataclass(frozen=True)
class InstanceStatus:
    """Where a project's local server stands.

    Attributes:
        running: its process is alive.
        healthy: it answers `GET /api/v1/health`.
        pid: its process id, when running.
        url: where it serves.
        archive: its archive directory.
    """

    running: bool
    healthy: bool
    pid: int | None
    url: str
    archive: Path

    def as_dict(self) -> dict[str, object]:
        """The status as JSON-ready data (what `osa status --json` prints)."""
        return {
            "running": self.running,
            "healthy": self.healthy,
            "pid": self.pid,
            "url": self.url,
            "archive": str(self.archive),
        }


def _sanitize(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    return slug or "osa-archive"


def _project_name(project_dir: Path) -> str:
    config = project_dir / "osa.yaml"
    if config.is_file():
        found = _NAME_LINE.search(config.read_text(encoding="utf-8"))
        if found and found.group(1).strip():
            return _sanitize(found.group(1))
    return _sanitize(project_dir.resolve().name)


def _port(project_dir: Path, port: int | None) -> int:
    if port is not None:
        return port
    config = project_dir / "osa.yaml"
    if config.is_file():
        found = _PORT_LINE.search(config.read_text(encoding="utf-8"))
        if found:
            return int(found.group(1))
    return DEFAULT_PORT


def init_project(
    directory: Path | None = None, *, name: str | None = None, force: bool = False
) -> tuple[Path, list[str]]:
    """Sets a directory up for a local server; returns it and the paths it created.

    Writes `osa.yaml` (name, port), creates `.data/` and `.osa/`, and adds them to
    `.gitignore` (once). An existing `osa.yaml` is kept unless `force`; `.data/` (the
    archive) is never touched.

    Raises:
        InstanceError: `osa.yaml` exists and `force` is not set.
    """
    project = (Path.cwd() if directory is None else Path(directory)).resolve()
    project.mkdir(parents=True, exist_ok=True)
    config = project / "osa.yaml"
    if config.exists() and not force:
        raise InstanceError(
            f"{config} already exists", hint="Pass --force to write it again (.data/ is kept)."
        )
    created: list[str] = []
    project_name = _sanitize(name) if name else _sanitize(project.name)
    config.write_text(
        f"# The local OSA server of this project (`osa start`).\n"
        f'name: "{project_name}"\nport: {DEFAULT_PORT}\n',
        encoding="utf-8",
    )
    created.append("osa.yaml")
    for sub in (_DATA_DIR, _STATE_DIR):
        path = project / sub
        if not path.exists():
            path.mkdir()
            created.append(f"{sub}/")
    gitignore = project / ".gitignore"
    existing = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    missing = [line for line in _GITIGNORE_LINES if line not in existing]
    if missing:
        prefix = "" if not existing or existing[-1] == "" else "\n"
        with gitignore.open("a", encoding="utf-8") as f:
            f.write(prefix + "\n".join(missing) + "\n")
        created.append(".gitignore")
    return project, created


def _pid_file(project: Path) -> Path:
    return project / _STATE_DIR / "server.pid"


def _log_file(project: Path) -> Path:
    return project / _STATE_DIR / "server.log"


def _is_our_server(pid: int) -> bool:
    """Whether `pid` is alive and runs the OSA server (not a reused process id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"osa.server" in cmdline and b"serve" in cmdline


def _running_pid(project: Path) -> int | None:
    try:
        pid = int(_pid_file(project).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_server(pid) else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "osa.server", *args]


def _mint_dev_token(archive_parent: Path) -> str:
    """An admin token of the project's archive, minted by the server's `token` command."""
    result = subprocess.run(
        _server_command(
            "token", "--subject", DEV_SUBJECT, "--role", "admin", "--ttl", DEV_TOKEN_TTL
        ),
        cwd=archive_parent,
        capture_output=True,
        text=True,
        check=False,
    )
    token = result.stdout.strip()
    if result.returncode != 0 or not token:
        raise InstanceError("minting the dev token failed", cause=result.stderr[-2000:])
    return token


def _server_env() -> dict[str, str]:
    # The local server takes its settings from defaults only: an OSA_* variable of the
    # author's shell (one meant for a remote server) must not reconfigure it.
    return {k: v for k, v in os.environ.items() if not k.startswith("OSA_")}


def start_instance(
    project_dir: Path | None = None,
    *,
    port: int | None = None,
    detach: bool = True,
    ui: UI | None = None,
    cred_path: Path | None = None,
) -> InstanceStatus:
    """Starts the project's local server (in the background unless `detach=False`).

    Returns its status once it answers; with `detach=False` it runs in the foreground
    until interrupted and returns its final status.

    Raises:
        InstanceError: it is already running, or it did not come up (with its log).
    """
    out = UI.create() if ui is None else ui
    project = (Path.cwd() if project_dir is None else Path(project_dir)).resolve()
    url = f"http://127.0.0.1:{_port(project, port)}"
    data = project / _DATA_DIR
    archive = data / "osa-archive"
    running = _running_pid(project)
    if running is not None:
        raise InstanceError(
            f"the server of {project} is already running (pid {running}) at {url}",
            hint="`osa status` shows it; `osa stop` stops it.",
        )
    data.mkdir(parents=True, exist_ok=True)
    (project / _STATE_DIR).mkdir(parents=True, exist_ok=True)
    argv = _server_command("serve", "--bind", url.removeprefix("http://"))
    if not detach:
        out.heading(f"OSA server of {_project_name(project)} at {url} (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            subprocess.run(argv, cwd=data, env=_server_env(), check=False)
        return instance_status(project, port=port)

    log = _log_file(project)
    with out.task(f"Starting the OSA server of {_project_name(project)}") as task:
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                argv,
                cwd=data,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _pid_file(project).write_text(f"{proc.pid}\n", encoding="utf-8")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                _pid_file(project).unlink(missing_ok=True)
                raise InstanceError(
                    f"the server did not come up at {url}",
                    cause=_tail(log, LOG_TAIL_ON_FAILURE),
                    hint=f"Is port {url.rsplit(':', 1)[1]} free? `--port` picks another.",
                )
            time.sleep(0.2)
        token = _mint_dev_token(data)
        write_credentials(url, access_token=token, refresh_token=DEV_REFRESH_TOKEN, path=cred_path)
        write_link(url, project_dir=project)
        task.done(detail=f"{url}, pid {proc.pid}")
    out.detail(f"archive {archive}; a dev admin token is stored for {url}")
    out.detail("osa deploy --process   then   osa test   ·   osa logs -f   ·   osa stop")
    return InstanceStatus(running=True, healthy=True, pid=proc.pid, url=url, archive=archive)


def stop_instance(project_dir: Path | None = None, *, ui: UI | None = None) -> bool:
    """Stops the project's local server; `False` when it was not running."""
    out = UI.create() if ui is None else ui
    project = (Path.cwd() if project_dir is None else Path(project_dir)).resolve()
    pid = _running_pid(project)
    if pid is None:
        _pid_file(project).unlink(missing_ok=True)
        out.info(f"No OSA server is running for {project}")
        return False
    with out.task(f"Stopping the OSA server (pid {pid})"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        # The server was its process group's leader: whatever is left in the group
        # (the server itself after the grace period, a hook it started) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        _pid_file(project).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    # A child of this process that exited stays a zombie until reaped: reap it.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return state != "Z"


def instance_status(project_dir: Path | None = None, *, port: int | None = None) -> InstanceStatus:
    """The project's local server: running, answering, where."""
    project = (Path.cwd() if project_dir is None else Path(project_dir)).resolve()
    url = f"http://127.0.0.1:{_port(project, port)}"
    pid = _running_pid(project)
    return InstanceStatus(
        running=pid is not None,
        healthy=pid is not None and _healthy(url),
        pid=pid,
        url=url,
        archive=project / _DATA_DIR / "osa-archive",
    )


def instance_logs(
    project_dir: Path | None = None, *, tail: int | None = None, follow: bool = False
) -> Iterator[str]:
    """The lines of the local server's log (the last `tail`), then new ones if `follow`.

    Raises:
        InstanceError: there is no log (the server never started here).
    """
    project = (Path.cwd() if project_dir is None else Path(project_dir)).resolve()
    log = _log_file(project)
    if not log.exists():
        raise InstanceError(f"no server log in {project}", hint="Run `osa start` first.")
    with log.open("r", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
        yield from lines if tail is None else lines[-tail:] if tail > 0 else []
        while follow:
            line = f.readline()
            if line:
                yield line.rstrip("\n")
            elif _running_pid(project) is None:
                return
            else:
                time.sleep(0.2)


def status_json(status: InstanceStatus) -> str:
    """`status` as one JSON line."""
    return json.dumps(status.as_dict())
