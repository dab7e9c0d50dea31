"""`osa deploy`: build the hook and ingester images of a project and register its conventions.

What a deploy does, in order (nothing is built or sent when an earlier step fails):

1. the docs gate (`osa.manifest.check_docs`);
2. with a token, an auth pre-flight on `GET /api/v1/auth/me`: a refused token stops the
   deploy with a hint keyed on the server's code (`missing_token`, `invalid_token`,
   `token_expired`);
3. the engine's own payload rules (`osa.payload.check_engine_rules`), so a payload the
   server would refuse is caught before any build;
4. one image per hook the conventions use and one per ingester, built from the
   project's `pyproject.toml` with podman or docker (`OSA_CONTAINER_ENGINE` chooses;
   extra build arguments from `OSA_BUILD_ARGS`), tagged `osa-hooks/<hook>:latest` and
   `osa-hooks-ingesters/<ingester>:latest` (or `<registry>/<name>:latest`), and pushed
   when a registry is given. The digest is the one the engine recorded: podman's
   manifest digest for a local image, the registry's digest after a push;
5. one `POST /api/v1/conventions` per convention with the releases bound, printing the
   slug and schema id the server answers.

`deploy(..., process=True)` skips images: every hook gets a local-process release run
by this interpreter (for an OSA server on the same machine; admin token needed), and
ingesters are left out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from osa import _registry
from osa.cli._http import json_object
from osa.cli.proc import ProcResult, run_streamed
from osa.cli.ui import UI, Task
from osa.errors import DeployError
from osa.manifest import check_docs
from osa.payload import (
    Component,
    ComponentRelease,
    ConventionDocs,
    ConventionManifest,
    Feature,
    FileRequirements,
    Hook,
    Ingester,
    SchemaRef,
    bind_releases,
    build_manifest,
    check_engine_rules,
    hook_columns,
)

__all__ = [
    "DEFAULT_PYTHON",
    "Component",
    "ComponentRelease",
    "ConventionDocs",
    "ConventionManifest",
    "DeployError",
    "Feature",
    "FileRequirements",
    "Hook",
    "Ingester",
    "SchemaRef",
    "bind_releases",
    "build_manifest",
    "container_engine",
    "deploy",
    "generate_hook_dockerfile",
    "generate_ingester_dockerfile",
]

#: The Python of the base image when `requires-python` names none.
DEFAULT_PYTHON = "3.13"
#: Seconds the auth pre-flight may take.
AUTH_TIMEOUT_S = 15.0
#: Seconds one `POST /conventions` may take.
POST_TIMEOUT_S = 30.0
#: Characters of a server's refusal kept in the error.
MAX_CAUSE_CHARS = 2000
#: Where the SDK is staged in the build context (removed after the build).
SDK_STAGE = ".osa-sdk"
#: Where pip's CA bundle is staged in the build context (removed after the build).
CA_STAGE = ".osa-ca-bundle.crt"

_AUTH_HINTS = {
    "token_expired": "The token has expired: run `osa login` again (or `osa start` for a "
    "local server, which stores a fresh dev token).",
    "invalid_token": "The server refused the token's signature or claims: it was issued by "
    "another server or instance. Run `osa login`, or `osa stop && osa start` for a local "
    "server.",
    "missing_token": "Run `osa login` (or pass --token / set OSA_TOKEN).",
}
_BUILD_STEP = re.compile(r"^(?:STEP|Step) (\d+)/(\d+)")
_SDK_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "*.egg-info", "target")


# --- manifest helpers ------------------------------------------------------------------


def _hook_columns(info: _registry.HookInfo) -> list[Any]:
    """The feature columns a hook's output declares (`[]` without an output model)."""
    return hook_columns(info)


def _resolve_source_ref(project_dir: Path) -> str:
    """`git:<short sha>` of the project's checkout, else `git:unknown`."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    except (FileNotFoundError, OSError):
        return "git:unknown"
    sha = (result.stdout or "").strip()
    if result.returncode != 0 or not sha:
        return "git:unknown"
    return f"git:{sha}"


# --- auth pre-flight -------------------------------------------------------------------


def _auth_error_code(response: httpx.Response) -> str | None:
    """The auth error code of a 401/403 answer (`detail.code`, else `code`), if any."""
    body = json_object(response)
    if body is None:
        return None
    detail = body.get("detail")
    code = detail.get("code") if isinstance(detail, dict) else body.get("code")
    return code if isinstance(code, str) else None


def _identity_detail(response: Any) -> str | None:
    """`display_name or external_id (roles)` of an `/auth/me` answer, when it has them."""
    body = json_object(response)
    if body is None:
        return None
    who = body.get("display_name") or body.get("external_id") or body.get("subject")
    roles = body.get("roles")
    if not isinstance(who, str):
        return None
    if isinstance(roles, list) and roles:
        return f"{who} ({', '.join(str(r) for r in roles)})"
    return who


def _check_auth(server: str, token: str, ui: UI) -> None:
    """Checks the token against `GET /api/v1/auth/me`.

    Raises:
        DeployError: the server refuses the token (with a hint for its code), answers
            another error, or cannot be reached.
    """
    with ui.task("Checking authentication") as task:
        try:
            resp = httpx.get(
                f"{server}/api/v1/auth/me",
                headers={"Authorization": f"Bearer {token}"},
                timeout=AUTH_TIMEOUT_S,
            )
            resp.raise_for_status()
        except httpx.HTTPStatusError as e:
            status = e.response.status_code
            if status in (401, 403):
                code = _auth_error_code(e.response)
                raise DeployError(
                    f"Authentication failed ({status})",
                    hint=_AUTH_HINTS.get(code or "", _AUTH_HINTS["missing_token"]),
                ) from None
            raise DeployError(
                f"Auth check failed ({status})", cause=e.response.text[:MAX_CAUSE_CHARS]
            ) from None
        except httpx.HTTPError as e:
            raise DeployError(
                f"Could not reach {server}",
                cause=str(e),
                hint="Is the server running? `osa status` shows a local one.",
            ) from None
        task.done(detail=_identity_detail(resp))


# --- image build -----------------------------------------------------------------------


def _pyproject(project_dir: Path) -> dict[str, Any]:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: `osa deploy` builds images from it")
    with path.open("rb") as f:
        return tomllib.load(f)


def _python_version(pyproject: dict[str, Any]) -> str:
    spec = str(pyproject.get("project", {}).get("requires-python", ""))
    found = re.search(r">=\s*(\d+\.\d+)", spec)
    return found.group(1) if found else DEFAULT_PYTHON


def _find_sdk_path(project_dir: Path) -> Path | None:
    """The local `osa-py` source the project names in `[tool.uv.sources]`, if it exists."""
    try:
        pyproject = _pyproject(project_dir)
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None
    source = pyproject.get("tool", {}).get("uv", {}).get("sources", {}).get("osa-py")
    if not isinstance(source, dict) or not isinstance(source.get("path"), str):
        return None
    path = (project_dir / source["path"]).resolve()
    return path if path.is_dir() else None


def _sdk_wheel() -> Path | None:
    """OSA's wheel to install in images (`OSA_SDK_WHEEL`), if one is named."""
    named = os.environ.get("OSA_SDK_WHEEL")
    if not named:
        return None
    path = Path(named).expanduser().resolve()
    if not path.is_file():
        raise DeployError(f"OSA_SDK_WHEEL={named} is not a file")
    return path


def _ca_bundle() -> Path | None:
    """The CA bundle pip trusts here (`OSA_BUILD_CA_BUNDLE`, else `PIP_CERT`), if any.

    A build behind a TLS-intercepting proxy needs it; it is bound into the install
    step only and never lands in the image.
    """
    for var in ("OSA_BUILD_CA_BUNDLE", "PIP_CERT"):
        named = os.environ.get(var)
        if named and Path(named).is_file():
            return Path(named)
    return None


def _dockerfile(project_dir: Path, entrypoint: str) -> str:
    pyproject = _pyproject(project_dir)
    name = str(pyproject.get("project", {}).get("name", project_dir.name))
    base = os.environ.get("OSA_BASE_IMAGE") or f"python:{_python_version(pyproject)}-slim"
    env = (
        "ENV VIRTUAL_ENV=/opt/osa PATH=/opt/osa/bin:$PATH PYTHONDONTWRITEBYTECODE=1 \\\n"
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1"
    )
    # Two stages: the first installs the SDK and the project into the venv /opt/osa
    # (with pip's CA bundle, when one is staged); the image gets only that venv.
    lines = [
        f"# Written by `osa deploy` for {name}.",
        f"FROM {base} AS build",
        env,
        "RUN python3 -m venv /opt/osa",
        "WORKDIR /app",
    ]
    cert = ""
    if _ca_bundle() is not None:
        lines.append(f"COPY {CA_STAGE} /tmp/osa-ca-bundle.crt")
        cert = "PIP_CERT=/tmp/osa-ca-bundle.crt "
    find_links = ""
    if _find_sdk_path(project_dir) is not None:
        lines += [f"COPY {SDK_STAGE} /app/{SDK_STAGE}", f"RUN {cert}pip install /app/{SDK_STAGE}"]
    else:
        wheel = _sdk_wheel()
        if wheel is not None:
            find_links = f"--find-links /app/{SDK_STAGE} "
            lines += [
                f"COPY {SDK_STAGE} /app/{SDK_STAGE}",
                f"RUN {cert}pip install {find_links}/app/{SDK_STAGE}/{wheel.name}",
            ]
    lines += [
        "COPY . /tmp/osa-build",
        f"RUN {cert}pip install {find_links}/tmp/osa-build",
        f"FROM {base}",
        "COPY --from=build /opt/osa /opt/osa",
        env,
        "RUN mkdir -p /osa/in /osa/out /osa/files",
        "ENV OSA_IN=/osa/in OSA_OUT=/osa/out OSA_FILES=/osa/files",
        f'ENTRYPOINT ["{entrypoint}"]',
    ]
    return "\n".join(lines) + "\n"


def generate_hook_dockerfile(project_dir: Path) -> str:
    """The build file of a hook image of the project (`ENTRYPOINT ["osa-run-hook"]`).

    The base is `OSA_BASE_IMAGE`, else `python:<X.Y>-slim` with X.Y from the project's
    `requires-python = ">=X.Y"`. The SDK comes from the project's `[tool.uv.sources]
    osa-py` path, else from the wheel `OSA_SDK_WHEEL` names, else from the package index.

    Raises:
        FileNotFoundError: the project has no `pyproject.toml`.
    """
    return _dockerfile(project_dir, "osa-run-hook")


def generate_ingester_dockerfile(project_dir: Path) -> str:
    """The build file of an ingester image (`ENTRYPOINT ["osa-run-ingester"]`).

    Raises:
        FileNotFoundError: the project has no `pyproject.toml`.
    """
    return _dockerfile(project_dir, "osa-run-ingester")


def container_engine() -> str:
    """The container CLI: `OSA_CONTAINER_ENGINE`, else docker or podman, whichever exists."""
    named = os.environ.get("OSA_CONTAINER_ENGINE")
    if named:
        return named
    for candidate in ("docker", "podman"):
        if shutil.which(candidate):
            return candidate
    return "docker"


@contextmanager
def _build_context(project_dir: Path, dockerfile: str) -> Iterator[Path]:
    """Stages the SDK (and pip's CA bundle) in the project; removes them after.

    The build file is written outside the project, so that the images of one project
    have the same build context and share their cached layers.
    """
    stage = project_dir / SDK_STAGE
    ca_stage = project_dir / CA_STAGE
    sdk = _find_sdk_path(project_dir)
    wheel = None if sdk is not None else _sdk_wheel()
    ca = _ca_bundle()
    with tempfile.TemporaryDirectory(prefix="osa-deploy-") as tmp:
        file = Path(tmp) / "Dockerfile"
        try:
            file.write_text(dockerfile, encoding="utf-8")
            if ca is not None:
                shutil.copyfile(ca, ca_stage)
            if sdk is not None or wheel is not None:
                shutil.rmtree(stage, ignore_errors=True)
                if sdk is not None:
                    shutil.copytree(sdk, stage, ignore=_SDK_IGNORE)
                elif wheel is not None:
                    stage.mkdir()
                    shutil.copy2(wheel, stage / wheel.name)
            yield file
        finally:
            if ca is not None:
                ca_stage.unlink(missing_ok=True)
            shutil.rmtree(stage, ignore_errors=True)


def _on_build_line(task: Task) -> Any:
    def on_line(line: str) -> None:
        step = _BUILD_STEP.match(line)
        if step:
            task.progress(int(step.group(1)), int(step.group(2)), line)
        task.output(line)

    return on_line


def _inspect(engine: str, ref: str, template: str) -> str | None:
    try:
        result = subprocess.run(
            [engine, "image", "inspect", "--format", template, ref],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    out = (result.stdout or "").strip()
    return out if result.returncode == 0 and out and out != "[]" else None


def _local_digest(engine: str, tag: str) -> str:
    # Podman records a manifest digest for a local image, the form `name@sha256:…`
    # resolves by; Docker has only the image id until the image is pushed.
    template = "{{.Digest}}" if os.path.basename(engine).startswith("podman") else "{{.Id}}"
    digest = _inspect(engine, tag, template)
    if digest is None:
        raise DeployError(f"{engine} image inspect {tag} found no image after the build")
    return digest if digest.startswith("sha256:") else f"sha256:{digest}"


def _repo_digest(engine: str, tag: str) -> str | None:
    out = _inspect(engine, tag, "{{json .RepoDigests}}")
    if out is None:
        return None
    try:
        digests = json.loads(out)
    except ValueError:
        return None
    repo = tag.rsplit(":", 1)[0]
    for entry in digests if isinstance(digests, list) else []:
        name, _, digest = str(entry).partition("@")
        if digest and name == repo:
            return digest
    return None


def _remote_digest(engine: str, tag: str) -> str:
    """The registry digest of `tag` (`--skip-build`), read with `manifest inspect`."""
    try:
        result = subprocess.run(
            [engine, "manifest", "inspect", tag, "--verbose"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise DeployError(f"{engine} not found", hint="Install podman or docker.") from None
    if result.returncode != 0:
        raise DeployError(
            f"{tag} is not in the registry (--skip-build builds nothing)",
            cause=(result.stderr or "")[-MAX_CAUSE_CHARS:],
            hint="Deploy once without --skip-build.",
        )
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    entries = data if isinstance(data, list) else [data]
    for entry in entries:
        if isinstance(entry, dict):
            descriptor = entry.get("Descriptor") or {}
            digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
            if isinstance(digest, str) and digest.startswith("sha256:"):
                return digest
    raise DeployError(f"{engine} manifest inspect {tag} gave no digest")


def _build_image(
    *,
    name: str,
    kind: str,
    tag: str,
    dockerfile: str,
    project_dir: Path,
    registry: str | None,
    ui: UI,
) -> str:
    """Builds `tag` from `dockerfile`, pushes it when there is a registry; its digest."""
    engine = container_engine()
    extra = shlex.split(os.environ.get("OSA_BUILD_ARGS", ""))
    with ui.task(f"Building {kind} {name}") as task:
        task.detail("building")
        with _build_context(project_dir, dockerfile) as file:
            argv = [engine, "build", "--platform", "linux/amd64", *extra, "-f", str(file)]
            argv += ["-t", tag, str(project_dir)]
            try:
                result: ProcResult = run_streamed(argv, on_line=_on_build_line(task))
            except FileNotFoundError:
                raise DeployError(
                    f"{engine} not found",
                    hint="Install podman or docker, or set OSA_CONTAINER_ENGINE.",
                ) from None
        if result.returncode != 0:
            raise DeployError(
                f"Building the image of {kind} {name} failed ({engine} exit {result.returncode})",
                cause=result.output,
                hint="Run `osa deploy -v` to see the whole build output.",
            )
        if registry is None:
            digest = _local_digest(engine, tag)
            task.done(detail=_short_digest(digest))
            return digest
        existing = _repo_digest(engine, tag)
        if existing is not None:
            task.done(detail=f"{_short_digest(existing)} (unchanged)")
            return existing
        task.detail("pushing")
        pushed = run_streamed([engine, "push", tag], on_line=task.output)
        if pushed.returncode != 0:
            raise DeployError(
                f"Pushing {tag} failed ({engine} exit {pushed.returncode})",
                cause=pushed.output,
                hint=f"Log in to the registry (`{engine} login`) and check its name.",
            )
        pushed_digest = _repo_digest(engine, tag)
        if pushed_digest is None:
            raise DeployError(f"{tag} was pushed but {engine} recorded no registry digest")
        task.done(detail=_short_digest(pushed_digest))
        return pushed_digest


def _short_digest(digest: str) -> str:
    return digest[:19] if digest.startswith("sha256:") else digest[:12]


def _build_hook_image(
    hook_name: str, project_dir: Path, tag: str, registry: str | None, ui: UI
) -> str:
    """Builds (and pushes) the image of one hook; returns its digest.

    A function of its own: the published suite checks through it that nothing is
    built before the auth gate.
    """
    return _build_image(
        name=hook_name,
        kind="hook",
        tag=tag,
        dockerfile=generate_hook_dockerfile(project_dir),
        project_dir=project_dir,
        registry=registry,
        ui=ui,
    )


def _tag(name: str, local_prefix: str, registry: str | None) -> str:
    prefix = registry.rstrip("/") if registry else local_prefix
    return f"{prefix}/{name}:latest"


# --- deploy ----------------------------------------------------------------------------


def _used_hooks(conventions: list[_registry.ConventionInfo]) -> list[_registry.HookInfo]:
    seen: dict[str, _registry.HookInfo] = {}
    for conv in conventions:
        for fn in conv.hooks:
            info = _registry.find_hook(fn) or _registry.find_hook_by_name(
                getattr(fn, "__name__", "")
            )
            if info is not None:
                seen.setdefault(info.name, info)
    return list(seen.values())


def _schema_label(schema_id: Any) -> str:
    """`id@version` of a `ConventionCreated.schema_id` (an object, or already a string)."""
    if isinstance(schema_id, dict):
        return f"{schema_id.get('id', '?')}@{schema_id.get('version', '?')}"
    return str(schema_id) if schema_id is not None else "?"


def _post_convention(
    server: str, token: str | None, conv: _registry.ConventionInfo, body: dict[str, Any], ui: UI
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with ui.task(f"Registering {conv.title}") as task:
        try:
            resp = httpx.post(
                f"{server}/api/v1/conventions", json=body, headers=headers, timeout=POST_TIMEOUT_S
            )
            resp.raise_for_status()
        except httpx.HTTPStatusError as e:
            status = e.response.status_code
            raise DeployError(
                f"Server rejected convention '{conv.title}' ({status})",
                cause=e.response.text[:MAX_CAUSE_CHARS],
                hint=_AUTH_HINTS["missing_token"] if status in (401, 403) else None,
            ) from None
        except httpx.HTTPError as e:
            raise DeployError(f"Could not reach {server}", cause=str(e)) from None
        result = resp.json()
        if not isinstance(result, dict):
            raise DeployError(f"{server} answered the deploy of '{conv.title}' with {result!r}")
        slug = result.get("slug")
        task.done(detail=f"{_schema_label(result.get('schema_id'))}, slug {slug}")
    if conv.ingester_info is not None and slug:
        ui.detail(f"osa ingestion start --convention {slug}")
    return result


def deploy(
    server: str,
    project_dir: Path | None = None,
    tag_prefix: str = "osa-hooks",
    token: str | None = None,
    registry: str | None = None,
    skip_build: bool = False,
    ui: UI | None = None,
    *,
    process: bool = False,
    conventions: list[_registry.ConventionInfo] | None = None,
) -> dict[str, Any]:
    """Deploys `conventions` (default: every registered one) to `server`.

    Returns the server's answer (`ConventionCreated`: slug, schema_id, hooks...), or
    `{"conventions": [...]}` when there are several conventions.

    Raises:
        RuntimeError: no convention is registered.
        DeployError: the docs gate, the engine's rules, the auth pre-flight, an image
            build or push, or the server refuses.
    """
    out = UI.create() if ui is None else ui
    project = Path.cwd() if project_dir is None else Path(project_dir)
    base = server.rstrip("/")
    if conventions is None:
        conventions = _registry.conventions()
    if not conventions:
        raise RuntimeError(
            "No conventions registered: install the project (`pip install -e .`) so its "
            "`osa.conventions` entry point is found"
        )
    check_docs(conventions)
    if token:
        _check_auth(base, token, out)
    if process:
        from osa.local import local_payload

        bodies = [local_payload(conv, docs_check=False) for conv in conventions]
        results = [
            _post_convention(base, token, conv, body, out)
            for conv, body in zip(conventions, bodies, strict=True)
        ]
        return results[0] if len(results) == 1 else {"conventions": results}

    manifests = [build_manifest(conv) for conv in conventions]
    for conv, manifest in zip(conventions, manifests, strict=True):
        check_engine_rules(conv, manifest.model_dump(mode="json", by_alias=True, exclude_none=True))
    source_ref = _resolve_source_ref(project)
    use_registry = registry or None
    hook_releases: dict[str, ComponentRelease] = {}
    for info in _used_hooks(conventions):
        tag = _tag(info.name, tag_prefix, use_registry)
        if skip_build and use_registry:
            digest = _remote_digest(container_engine(), tag)
        else:
            digest = _build_hook_image(info.name, project, tag, use_registry, out)
        hook_releases[info.name] = ComponentRelease(image=tag, digest=digest, source_ref=source_ref)
    ingester_releases: dict[str, ComponentRelease] = {}
    for conv in conventions:
        ing = conv.ingester_info
        if ing is None or ing.name in ingester_releases:
            continue
        tag = _tag(ing.name, f"{tag_prefix}-ingesters", use_registry)
        if skip_build and use_registry:
            digest = _remote_digest(container_engine(), tag)
        else:
            digest = _build_image(
                name=ing.name,
                kind="ingester",
                tag=tag,
                dockerfile=generate_ingester_dockerfile(project),
                project_dir=project,
                registry=use_registry,
                ui=out,
            )
        ingester_releases[ing.name] = ComponentRelease(
            image=tag, digest=digest, source_ref=source_ref
        )

    results = []
    for conv, manifest in zip(conventions, manifests, strict=True):
        ing = conv.ingester_info
        bound = bind_releases(
            manifest, hook_releases, None if ing is None else ingester_releases.get(ing.name)
        )
        body = bound.model_dump(mode="json", by_alias=True, exclude_none=True)
        results.append(_post_convention(base, token, conv, body, out))
    return results[0] if len(results) == 1 else {"conventions": results}
