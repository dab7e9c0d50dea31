"""`osa deploy`'s own parts: the generated build file, digests read from the container
CLI, and the command line's errors (the published suite covers the rest; the images
are built for real in examples/server/tests/osa_deploy.rs).
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import run, script
from osa.cli import deploy as deploy_module
from osa.cli.deploy import DeployError, generate_hook_dockerfile, generate_ingester_dockerfile


def project(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "my-hooks"\nrequires-python = ">=3.12"\ndependencies = ["osa-py"]\n'
    )
    return tmp_path


def test_the_build_file_installs_into_a_venv_and_ships_only_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OSA_BASE_IMAGE", raising=False)
    monkeypatch.delenv("OSA_SDK_WHEEL", raising=False)
    monkeypatch.delenv("OSA_BUILD_CA_BUNDLE", raising=False)
    monkeypatch.delenv("PIP_CERT", raising=False)
    text = generate_hook_dockerfile(project(tmp_path))
    stages = text.split("\nFROM ")
    assert len(stages) == 3, text  # the header comment, the build stage, the image
    _, build, image = stages
    assert build.startswith("python:3.12-slim AS build\n")
    assert "RUN python3 -m venv /opt/osa" in build
    assert "COPY . /tmp/osa-build" in build
    assert "RUN pip install /tmp/osa-build" in build
    assert image.startswith("python:3.12-slim\nCOPY --from=build /opt/osa /opt/osa")
    assert "COPY . " not in image
    assert image.rstrip().endswith('ENTRYPOINT ["osa-run-hook"]')
    assert (
        generate_ingester_dockerfile(tmp_path).rstrip().endswith('ENTRYPOINT ["osa-run-ingester"]')
    )


def test_the_sdk_wheel_and_the_ca_bundle_stay_in_the_build_stage(tmp_path, monkeypatch):
    wheel = tmp_path / "osa_py-0.9.0+osa.1-cp311-abi3-manylinux2014_x86_64.whl"
    wheel.write_bytes(b"wheel")
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    monkeypatch.setenv("OSA_SDK_WHEEL", str(wheel))
    monkeypatch.setenv("OSA_BUILD_CA_BUNDLE", str(ca))
    monkeypatch.setenv("OSA_BASE_IMAGE", "localhost/base@sha256:" + "a" * 64)
    proj = project(tmp_path / "p")
    _, build, image = generate_hook_dockerfile(proj).split("\nFROM ")
    assert build.startswith(f"localhost/base@sha256:{'a' * 64} AS build\n")
    assert "COPY .osa-ca-bundle.crt /tmp/osa-ca-bundle.crt" in build
    assert (
        f"RUN PIP_CERT=/tmp/osa-ca-bundle.crt pip install --find-links /app/.osa-sdk "
        f"/app/.osa-sdk/{wheel.name}" in build
    )
    assert "PIP_CERT" not in image
    assert ".osa-sdk" not in image

    # The context is staged for the build and cleaned after it, even when it fails.
    seen: dict[str, Any] = {}

    def failing_build() -> None:
        with deploy_module._build_context(proj, "FROM x\n") as file:
            seen["file"] = file
            seen["staged"] = sorted(p.name for p in proj.iterdir())
            seen["wheel"] = (proj / ".osa-sdk" / wheel.name).read_bytes()
            raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        failing_build()
    assert seen["staged"] == [".osa-ca-bundle.crt", ".osa-sdk", "pyproject.toml"]
    assert seen["wheel"] == b"wheel"
    assert not seen["file"].is_relative_to(proj)
    assert sorted(p.name for p in proj.iterdir()) == ["pyproject.toml"]
    assert not seen["file"].exists()


def test_a_missing_sdk_wheel_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OSA_SDK_WHEEL", str(tmp_path / "nope.whl"))
    with pytest.raises(DeployError, match=r"OSA_SDK_WHEEL=.*nope\.whl is not a file"):
        generate_hook_dockerfile(project(tmp_path))


def fake_run(stdout: str, returncode: int = 0) -> Any:
    def run_(argv: list[str], **_: Any) -> SimpleNamespace:
        fake_run.argv = argv  # type: ignore[attr-defined]
        return SimpleNamespace(returncode=returncode, stdout=stdout, stderr="no such manifest")

    return run_


def test_digests_are_read_from_the_container_cli(monkeypatch):
    monkeypatch.setattr(deploy_module.subprocess, "run", fake_run("0123abcd\n"))
    assert deploy_module._local_digest("docker", "osa-hooks/h:latest") == "sha256:0123abcd"
    monkeypatch.setattr(deploy_module.subprocess, "run", fake_run("sha256:feed\n"))
    assert deploy_module._local_digest("/usr/bin/podman", "osa-hooks/h:latest") == "sha256:feed"
    assert fake_run.argv[-2:] == ["{{.Digest}}", "osa-hooks/h:latest"]  # type: ignore[attr-defined]

    repo = json.dumps(["other/h@sha256:0000", "reg.example/h@sha256:1111"])
    monkeypatch.setattr(deploy_module.subprocess, "run", fake_run(repo))
    assert deploy_module._repo_digest("docker", "reg.example/h:latest") == "sha256:1111"
    assert deploy_module._repo_digest("docker", "elsewhere/h:latest") is None

    listing = json.dumps([{"Descriptor": {"digest": "sha256:2222"}}])
    monkeypatch.setattr(deploy_module.subprocess, "run", fake_run(listing))
    assert deploy_module._remote_digest("docker", "reg.example/h:latest") == "sha256:2222"
    monkeypatch.setattr(deploy_module.subprocess, "run", fake_run("", returncode=1))
    with pytest.raises(DeployError, match="is not in the registry") as caught:
        deploy_module._remote_digest("docker", "reg.example/h:latest")
    assert caught.value.hint == "Deploy once without --skip-build."


def test_the_command_line_fails_with_cause_and_hint(sample_installed, tmp_path):
    env = {"HOME": str(tmp_path), "NO_COLOR": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    no_token = run([script("osa"), "deploy", "--server", closed], env=env, cwd=tmp_path)
    assert no_token.returncode == 1
    assert "error: Not authenticated" in no_token.stderr
    assert f"hint: Run `osa login --server {closed}`" in no_token.stderr
    assert no_token.stdout == ""

    unreachable = run(
        [script("osa"), "deploy", "--server", closed, "--token", "t"], env=env, cwd=tmp_path
    )
    assert unreachable.returncode == 1
    assert f"Deploying to {closed} (from --server flag, auth: --token flag)" in (unreachable.stderr)
    assert f"error: Could not reach {closed}" in unreachable.stderr
    assert "✗ Checking authentication" in unreachable.stderr

    nowhere = run([script("osa"), "deploy"], env=env, cwd=tmp_path)
    assert nowhere.returncode == 1
    assert "error: no server given" in nowhere.stderr


def test_plain_output_off_a_terminal():
    proc = subprocess.run(
        [script("osa"), "logout", "--server", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        env={"HOME": "/nonexistent", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0
    assert "\x1b[" not in proc.stderr
    assert "No credentials found for http://127.0.0.1:1" in proc.stderr
