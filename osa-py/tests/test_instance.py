"""`osa init`, `osa start`, `osa stop`, `osa status`, `osa logs`: OSA's own server, run
from this wheel for a project, and the author's loop against it (`osa deploy --process`,
`osa test --server`), through the real CLI in subprocesses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run, script, write_records
from osa.cli.instance import InstanceError, init_project, instance_status
from osa.cli.server_commands import dashboard_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def osa_processes(marker: str) -> list[str]:
    """Command lines of live processes whose command line or directory names `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(f"{proc.name}: {cmdline} (in {cwd})")
    return found


def running(pid: int) -> bool:
    """Whether `pid` runs (an exited process its new parent has not reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """An empty project directory and the environment of its author (own HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    directory = tmp_path / "project"
    env = {"HOME": str(home), "NO_COLOR": "1"}
    yield directory, env
    # Whatever a failing test left running is stopped, not leaked to later tests.
    if directory.exists():
        run([script("osa"), "stop"], env=env, cwd=directory)


def test_init_writes_the_project_files_once(tmp_path: Path) -> None:
    directory = tmp_path / "archive"
    (tmp_path / "archive").mkdir()
    (directory / ".gitignore").write_text("build/")
    project, created = init_project(directory, name="My Archive!")
    assert project == directory.resolve()
    assert created == ["osa.yaml", ".data/", ".osa/", ".gitignore"]
    assert 'name: "my-archive"' in (directory / "osa.yaml").read_text()
    assert (directory / ".gitignore").read_text().splitlines() == ["build/", ".data/", ".osa/"]
    with pytest.raises(InstanceError, match="already exists"):
        init_project(directory)
    (directory / ".data" / "keep").write_text("archive")
    _, again = init_project(directory, force=True)
    assert again == ["osa.yaml"]
    assert (directory / ".data" / "keep").read_text() == "archive"
    assert (directory / ".gitignore").read_text().count(".data/") == 1


def test_start_deploy_test_stop_with_only_the_wheel(
    project: tuple[Path, dict[str, str]],
    records: list[dict[str, Any]],
    sample_installed: None,
    tmp_path: Path,
) -> None:
    directory, env = project
    port = free_port()
    osa = script("osa")

    init = run([osa, "init", str(directory)], env=env)
    assert init.returncode == 0, init.stderr
    assert (directory / "osa.yaml").is_file()

    start = run([osa, "start", "--port", str(port)], env=env, cwd=directory)
    assert start.returncode == 0, start.stderr
    url = f"http://127.0.0.1:{port}"
    assert f"Starting the OSA server of project ({url}, pid " in start.stderr, start.stderr
    pid = int((directory / ".osa" / "server.pid").read_text())
    assert (directory / ".data" / "osa-archive" / "archive.db").is_file()
    # The dev token is stored for the server's URL, and the project is linked to it.
    stored = Path(env["HOME"]) / ".config/osa/credentials.json"
    assert stored.stat().st_mode & 0o077 == 0
    assert stored.parent.stat().st_mode & 0o077 == 0
    creds = json.loads(stored.read_text())
    assert creds[url]["refresh_token"] == "dev-no-refresh"
    assert json.loads((directory / ".osa" / "config.json").read_text()) == {"server": url}

    status = run([osa, "status", "--port", str(port), "--json"], env=env, cwd=directory)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "running": True,
        "healthy": True,
        "pid": pid,
        "url": url,
        "archive": str((directory / ".data" / "osa-archive").resolve()),
    }
    again = run([osa, "start", "--port", str(port)], env=env, cwd=directory)
    assert again.returncode == 1
    assert "already running" in again.stderr

    # A token the server did not sign: refused before anything is built or sent, with
    # the hint for the server's code.
    forged = run([osa, "deploy", "--process", "--token", "a.b.c"], env=env, cwd=directory)
    assert forged.returncode == 1
    assert "error: Authentication failed (401)" in forged.stderr, forged.stderr
    assert "signature" in forged.stderr
    assert "Registering" not in forged.stderr

    deploy = run([osa, "deploy", "--process"], env=env, cwd=directory)
    assert deploy.returncode == 0, deploy.stderr
    assert f"Deploying to {url} (from .osa/config.json, auth: stored login)" in deploy.stderr
    assert "✓ Checking authentication (dev-admin (admin))" in deploy.stderr, deploy.stderr
    assert "✓ Registering Protein Structures (pdb-structure@1.0.0, slug protein-structures)" in (
        deploy.stderr
    )

    jsonl, files = write_records(records, tmp_path)
    test = run(
        [
            osa,
            "test",
            "--server",
            "--convention",
            "Protein Structures",
            "--records",
            str(jsonl),
            "--files",
            str(files),
            "--json",
        ],
        env=env,
        cwd=directory,
    )
    assert test.returncode == 0, test.stderr
    outcome = json.loads(test.stdout)
    assert outcome["status"] == "completed"
    assert [(r["id"], r["verdict"]) for r in outcome["records"]] == [
        ("good", "accepted"),
        ("coarse", "rejected"),
        ("no-cif", "rejected"),
    ]
    assert f'osa test: "Protein Structures" on {url}' in test.stderr
    assert "3 record(s): 1 accepted, 2 rejected" in test.stderr

    page = run([osa, "dashboard", "--no-browser"], env=env, cwd=directory)
    assert page.returncode == 0, page.stderr
    assert page.stdout.strip() == f"{url}/dashboard"
    with urllib.request.urlopen(page.stdout.strip(), timeout=10) as resp:
        assert resp.status == 200
        assert '<meta name="osa-api" content="/api/v1">' in resp.read().decode()

    logs = run([osa, "logs", "--tail", "50"], env=env, cwd=directory)
    assert logs.returncode == 0
    assert f"serving  {url}/api/v1" in logs.stdout

    stop = run([osa, "stop"], env=env, cwd=directory)
    assert stop.returncode == 0, stop.stderr
    assert not (directory / ".osa" / "server.pid").exists()
    assert not instance_status(directory, port=port).running
    assert osa_processes(str(directory)) == []
    assert not running(pid)
    # A second stop has nothing to do.
    assert "No OSA server is running" in run([osa, "stop"], env=env, cwd=directory).stderr


def test_a_server_that_cannot_start_says_why(project: tuple[Path, dict[str, str]]) -> None:
    directory, env = project
    directory.mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        start = run([script("osa"), "start", "--port", str(port)], env=env, cwd=directory)
    finally:
        busy.close()
    assert start.returncode == 1
    assert "the server did not come up" in start.stderr
    assert "Is port" in start.stderr
    assert not (directory / ".osa" / "server.pid").exists()
    assert osa_processes(str(directory)) == []


def test_status_of_a_project_with_no_server(tmp_path: Path) -> None:
    proc = subprocess.run(
        [script("osa"), "status"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "server   stopped" in proc.stdout


def test_the_dashboard_url_carries_the_token_in_its_fragment() -> None:
    assert dashboard_url("http://h:1", None) == "http://h:1/dashboard"
    assert dashboard_url("http://h:1", "a.b/c+d") == "http://h:1/dashboard#token=a.b%2Fc%2Bd"
