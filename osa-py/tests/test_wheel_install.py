"""The built distributions as an author installs them.

`scripts/python-tests.sh` builds one manylinux2014 abi3 wheel and an sdist into
`$OSA_WHEEL_DIR` and runs this module once. Each test makes fresh venvs (Python 3.11,
and 3.13 from ~/.pyenv) and installs from that directory, with PyPI as the index for
everything else (pydantic, and the published `osa-py` the pins could also resolve to).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from conftest import run

ROOT = Path(__file__).resolve().parents[2]


def wheel_dir() -> Path:
    value = os.environ.get("OSA_WHEEL_DIR")
    assert value, "OSA_WHEEL_DIR is not set: run through scripts/python-tests.sh"
    return Path(value)


def only(pattern: str) -> Path:
    found = sorted(wheel_dir().glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {wheel_dir()}, found {found}"
    return found[0]


def osa_version() -> str:
    cargo = tomllib.loads((ROOT / "osa-py" / "Cargo.toml").read_text())
    version: str = cargo["package"]["version"]
    return version


def interpreters() -> list[str]:
    py313 = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3")))
    assert py313, "Python 3.13 is expected under ~/.pyenv/versions"
    return [sys.executable if sys.version_info[:2] == (3, 11) else "python3.11", py313[-1]]


def fresh_venv(python: str, where: Path) -> Path:
    made = run([python, "-m", "venv", str(where)])
    assert made.returncode == 0, f"cannot make a venv with {python}: {made.stderr}"
    return where / "bin" / "python"


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run([str(python), "-m", "pip", "install", "-q", *args])
    assert result.returncode == 0, result.stderr
    return result


def installed_version(python: Path) -> str:
    probe = "from importlib.metadata import version; print(version('osa-py'))"
    result = run([str(python), "-c", probe])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_wheel_is_abi3_manylinux2014_and_versioned_above_the_published_line():
    wheel = only("osa_py-*.whl")
    assert "-cp311-abi3-" in wheel.name
    assert "manylinux2014_x86_64" in wheel.name
    version = osa_version()
    assert wheel.name.startswith(f"osa_py-{version}-")
    # Above the published 0.9.0 it is compatible with, so `osa-py>=0.7,<1` selects it.
    major_minor_patch = tuple(int(p) for p in version.split("+")[0].split("."))
    assert (0, 9, 0) <= major_minor_patch < (1, 0, 0)
    assert "+" in version, "a local label marks the build as OSA's"


def test_the_sdist_holds_the_crates_the_wheel_is_built_from():
    sdist = only("osa_py-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "osa-py/Cargo.toml",
        "osa-py/src/lib.rs",
        "python/osa/__init__.py",
        "osa-core/src/lib.rs",
        "osa-sqlx/src/lib.rs",
        "pyproject.toml",
    ]:
        assert needed in names, f"{needed} is not in {sdist.name}"


@pytest.mark.parametrize("which", ["3.11", "3.13"])
def test_the_wheel_installs_in_a_fresh_venv(which, tmp_path):
    python_for = dict(zip(["3.11", "3.13"], interpreters(), strict=True))
    python = fresh_venv(python_for[which], tmp_path / "venv")
    pip(python, "--find-links", str(wheel_dir()), "osa-py")
    assert installed_version(python) == osa_version()
    cli = run([str(python.parent / "osa"), "--version"])
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"osa {osa_version()}"
    native = run([str(python), "-c", "import osa._native as n; print(n.__version__)"])
    assert native.stdout.strip() == osa_version(), native.stderr


def pinned_package(where: Path) -> Path:
    (where / "src" / "pinned_pkg").mkdir(parents=True)
    (where / "src" / "pinned_pkg" / "__init__.py").write_text("")
    (where / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "pinned-pkg"\nversion = "1.0"\n'
        'dependencies = ["osa-py>=0.7,<1", "pydantic>=2"]\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["src/pinned_pkg"]\n'
    )
    return where


def test_a_package_pinning_the_published_line_keeps_osas_wheel(tmp_path):
    package = pinned_package(tmp_path / "pkg")
    # OSA's wheel installed first: the pin is met, nothing replaces it.
    python = fresh_venv(interpreters()[0], tmp_path / "venv")
    pip(python, "--find-links", str(wheel_dir()), "osa-py")
    pip(python, "--find-links", str(wheel_dir()), str(package))
    assert installed_version(python) == osa_version()
    # Nothing installed first: with the wheel directory given, the pin resolves to
    # OSA's wheel rather than the published SDK on PyPI.
    other = fresh_venv(interpreters()[0], tmp_path / "other")
    pip(other, "--find-links", str(wheel_dir()), str(package))
    assert installed_version(other) == osa_version()
    check = run([str(other), "-m", "pip", "check"])
    assert check.returncode == 0, check.stdout + check.stderr
