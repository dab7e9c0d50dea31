#!/usr/bin/env python3
"""Benchmark: OSA's `osa-run-hook` against the published `osa-py` SDK's, side by side.

Both entrypoints run the same trivial hook package (installed into each venv) over the
same `records.jsonl` batch, on the same Python 3.13 interpreter (the published SDK needs
>= 3.13; OSA's wheel is abi3). For each batch size the runs alternate between the two
and the median wall time is reported; the peak RSS of every run is read from
`os.wait4` (the hook process and its children) in a minimal probe process. The outputs
of the two are checked to carry the same rows for every record before any figure is
printed. A 1-record batch (a deposition: start-up dominated) is timed the same way.

Setup (idempotent, under --work, default target/bench-sdk, never committed):
- `osa-venv`: Python 3.13 + pydantic + OSA's wheel (from target/wheels, built by
  scripts/python-tests.sh, or --wheel) + the hook package;
- `published-venv`: Python 3.13 + `pip install osa-py` from PyPI (--published-spec) +
  the hook package.

Usage:
    scripts/python-tests.sh            # builds target/wheels/osa_py-*.whl
    python3 benches/sdk_entrypoint.py  # 10k records x 5 runs each, 1 record x 20, then
                                       # 100k once for each side that fits --memory-timeout
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK = "bench_trivial"

HOOK_PACKAGE = {
    "pyproject.toml": """\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "osa-bench-trivial"
        version = "0.1.0"
        requires-python = ">=3.11"

        [project.entry-points."osa.conventions"]
        bench = "osa_bench_trivial"
        """,
    "osa_bench_trivial/__init__.py": '''\
        """A trivial hook: one row per record from two metadata fields."""

        from pydantic import BaseModel

        from osa import Record, Schema, hook


        class Item(Schema):
            __schema_id__ = "bench-item"

            label: str
            value: int


        class Row(BaseModel):
            label: str
            doubled: int


        @hook
        def bench_trivial(record: Record[Item]) -> Row:
            return Row(label=record.metadata.label, doubled=record.metadata.value * 2)
        ''',
}


#: Runs one command and reports its wall time and peak RSS. A process's peak RSS
#: starts at the size of the process that spawned it (Linux carries the pre-exec
#: image's high-water mark over `exec`), so the entrypoints are spawned from this
#: minimal interpreter (python -I -S, ~8 MiB), never from the harness itself.
PROBE = """\
import json, os, sys, time
argv = sys.argv[1:]
quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=quiet)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"seconds": seconds, "max_rss_kb": usage.ru_maxrss, "code": code}))
"""


@dataclass
class Run:
    """One execution of an entrypoint over a batch."""

    seconds: float
    max_rss_kb: int


@dataclass
class Side:
    """One entrypoint under test."""

    name: str
    venv: Path
    version: str = ""

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.venv / "bin" / "python"

    @property
    def entrypoint(self) -> Path:
        """The venv's `osa-run-hook` console script."""
        return self.venv / "bin" / "osa-run-hook"


def log(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def pip(python: Path, *args: str) -> None:
    """Runs pip quietly in the venv of `python`."""
    subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)


def find_python313(explicit: str | None) -> Path:
    """The Python 3.13 interpreter: --python313, ~/.pyenv/versions/3.13*, python3.13."""
    candidates: list[str | None] = [explicit] if explicit else []
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3")))
    candidates.append(shutil.which("python3.13"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    sys.exit("error: Python 3.13 not found (give --python313)")


def find_wheel(explicit: str | None) -> Path:
    """OSA's abi3 wheel: --wheel or the one scripts/python-tests.sh leaves in target/wheels."""
    if explicit:
        return Path(explicit)
    wheels = sorted(
        (ROOT / "target" / "wheels").glob("osa_py-*-abi3-*.whl"), key=lambda p: p.stat().st_mtime
    )
    if not wheels:
        sys.exit("error: no target/wheels/osa_py-*-abi3-*.whl: run scripts/python-tests.sh first")
    return wheels[-1]


def write_hook_package(work: Path) -> Path:
    """The trivial hook package, written fresh under `work`."""
    package = work / "hook-package"
    shutil.rmtree(package, ignore_errors=True)
    for name, text in HOOK_PACKAGE.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


def make_venv(python313: Path, venv: Path) -> Path:
    """A Python 3.13 venv with an up-to-date pip and hatchling (created once)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([str(python313), "-m", "venv", str(venv)], check=True)
        pip(python, "--upgrade", "pip")
        pip(python, "hatchling")
    return python


def installed_version(python: Path) -> str:
    """The version of the `osa-py` distribution in a venv."""
    code = "from importlib.metadata import version; print(version('osa-py'))"
    return subprocess.run(
        [str(python), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def setup(args: argparse.Namespace, work: Path) -> tuple[Side, Side]:
    """Creates (or refreshes) both venvs and installs the hook package into each."""
    python313 = find_python313(args.python313)
    wheel = find_wheel(args.wheel)
    package = write_hook_package(work)
    osa = Side("OSA (osa-py, Rust core)", work / "osa-venv")
    published = Side("published osa-py (PyPI)", work / "published-venv")

    log(f"osa venv: {wheel.name}")
    python = make_venv(python313, osa.venv)
    pip(python, "pydantic>=2", "httpx>=0.27")
    pip(python, "--force-reinstall", "--no-deps", str(wheel))

    log(f"published venv: pip install {args.published_spec}")
    python = make_venv(python313, published.venv)
    pip(python, args.published_spec)

    for side in (osa, published):
        pip(side.python, "--force-reinstall", "--no-deps", "--no-build-isolation", str(package))
        side.version = installed_version(side.python)
    return osa, published


def write_batch(root: Path, count: int) -> Path:
    """`<root>/in/records.jsonl` with `count` records (and an empty files directory)."""
    (root / "in").mkdir(parents=True, exist_ok=True)
    (root / "files").mkdir(exist_ok=True)
    path = root / "in" / "records.jsonl"
    if path.exists() and sum(1 for _ in path.open()) == count:
        return path
    with path.open("w") as f:
        for i in range(count):
            record = {"id": f"rec-{i:06d}", "metadata": {"label": f"item {i}", "value": i}}
            f.write(json.dumps({**record, "size_hint_mb": 0}) + "\n")
    return path


def run_once(side: Side, batch: Path, out: Path, timeout: float) -> Run:
    """Runs the side's `osa-run-hook` over `batch`; wall time and the child's peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    tmp = out.parent / f"{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OSA_IN": str(batch / "in"),
        "OSA_OUT": str(out),
        "OSA_FILES": str(batch / "files"),
        "OSA_HOOK_NAME": HOOK,
        "OSA_LOG_LEVEL": "WARNING",
        # The published entrypoint makes a temp dir for every record without files.
        "TMPDIR": str(tmp),
    }
    stderr_path = out.parent / f"{out.name}.stderr"
    probe = [sys.executable, "-I", "-S", "-c", PROBE, str(side.entrypoint)]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            probe, env=env, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
        )
        try:
            report, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise TimeoutError(f"{side.name}: stopped after {timeout:.0f} s") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if process.returncode != 0:
        raise RuntimeError(f"probe exited {process.returncode}: {report.decode()[-2000:]}")
    result = json.loads(report)
    if result["code"] != 0:
        tail = stderr_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{side.name} exited {result['code']}: {tail}")
    return Run(seconds=result["seconds"], max_rss_kb=result["max_rss_kb"])


def outcomes(out: Path) -> dict[str, list[dict[str, object]]]:
    """`{record id: feature rows}` from features.jsonl; fails on any rejection or error."""
    for name in ("rejections.jsonl", "errors.jsonl"):
        text = (out / name).read_text()
        if text.strip():
            raise RuntimeError(f"{out / name} is not empty: {text[:500]}")
    rows = {}
    with (out / "features.jsonl").open() as f:
        for line in f:
            item = json.loads(line)
            rows[item["id"]] = item["features"]
    return rows


def check_same_rows(sides: list[Side], work: Path, count: int) -> None:
    """Both entrypoints produced one row per record, and the same rows."""
    expected = {f"rec-{i:06d}": [{"label": f"item {i}", "doubled": 2 * i}] for i in range(count)}
    for side in sides:
        got = outcomes(work / f"out-{count}-{side.venv.name}")
        if got != expected:
            missing = len(expected.keys() - got.keys())
            raise RuntimeError(f"{side.name}: rows differ from the expected ({missing} missing)")


def measure(
    sides: list[Side], work: Path, count: int, runs: int, timeout: float
) -> dict[str, list[Run]]:
    """`runs` alternating executions of each side over a batch of `count` records."""
    batch = work / f"batch-{count}"
    write_batch(batch, count)
    results: dict[str, list[Run]] = {side.name: [] for side in sides}
    for i in range(runs):
        for side in sides if i % 2 == 0 else list(reversed(sides)):
            run = run_once(side, batch, work / f"out-{count}-{side.venv.name}", timeout)
            rss = run.max_rss_kb / 1024
            log(f"  {count:>7} records  {side.name:<26} {run.seconds:8.3f} s  {rss:7.1f} MiB")
            results[side.name].append(run)
    check_same_rows(sides, work, count)
    return results


def main() -> None:
    """Sets up both venvs, measures, prints the Markdown report, writes results.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / "target" / "bench-sdk"))
    parser.add_argument("--wheel", help="OSA's wheel (default: newest target/wheels/*abi3*)")
    parser.add_argument("--python313", help="Python 3.13 interpreter")
    parser.add_argument("--published-spec", default="osa-py", help="pip spec of the published SDK")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (median)")
    parser.add_argument("--startup-runs", type=int, default=20, help="runs of a 1-record batch")
    parser.add_argument("--memory-records", type=int, default=100_000)
    parser.add_argument("--memory-timeout", type=float, default=600, help="seconds per run at most")
    args = parser.parse_args()

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    osa, published = setup(args, work)
    sides = [osa, published]
    log(f"python {platform.python_version()} (harness); entrypoints on Python 3.13")

    speed = measure(sides, work, args.records, args.runs, args.memory_timeout)
    startup = measure(sides, work, 1, args.startup_runs, args.memory_timeout)
    median = {name: statistics.median(r.seconds for r in runs) for name, runs in speed.items()}
    # The large batch, for each side whose batch time, extrapolated from the median
    # above, fits in --memory-timeout; else the estimate is reported instead.
    memory: dict[str, Run | None] = {}
    estimate: dict[str, float] = {}
    for side in sides:
        estimate[side.name] = median[side.name] / args.records * args.memory_records
        memory[side.name] = None
        if estimate[side.name] > args.memory_timeout:
            guess = estimate[side.name]
            log(f"  {side.name}: {args.memory_records} records skipped (~{guess:.0f} s)")
            continue
        try:
            measured = measure([side], work, args.memory_records, 1, args.memory_timeout)
            memory[side.name] = measured[side.name][0]
        except TimeoutError as e:
            log(f"  {e}")

    ratio = median[published.name] / median[osa.name]
    print(f"## osa-run-hook: {args.records:,} records, trivial hook (median of {args.runs} runs)\n")
    print("| entrypoint | version | median wall | per record | runs (s) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for side in sides:
        side_runs = speed[side.name]
        print(
            f"| {side.name} | {side.version} | {median[side.name]:.3f} s | "
            f"{median[side.name] / args.records * 1e6:.1f} µs | "
            f"{', '.join(f'{r.seconds:.2f}' for r in side_runs)} | "
            f"{max(r.max_rss_kb for r in side_runs) / 1024:.1f} MiB |"
        )
    print(f"\nOSA is **{ratio:.2f}x** faster (target: at least 3x).\n")
    print(f"## Start-up: 1 record (a deposition), median of {args.startup_runs} runs\n")
    print("| entrypoint | median wall | fastest | peak RSS |")
    print("|---|---|---|---|")
    for side in sides:
        side_runs = startup[side.name]
        seconds = sorted(r.seconds for r in side_runs)
        print(
            f"| {side.name} | {statistics.median(seconds) * 1000:.0f} ms | "
            f"{seconds[0] * 1000:.0f} ms | {max(r.max_rss_kb for r in side_runs) / 1024:.1f} MiB |"
        )
    print()
    print(f"## Peak memory: {args.memory_records:,} records\n")
    print("| entrypoint | wall | peak RSS |")
    print("|---|---|---|")
    for side in sides:
        memory_run = memory[side.name]
        if memory_run is None:
            print(
                f"| {side.name} | not run: ~{estimate[side.name]:.0f} s estimated from the "
                f"{args.records:,}-record median (limit {args.memory_timeout:.0f} s) | - |"
            )
        else:
            rss = memory_run.max_rss_kb / 1024
            print(f"| {side.name} | {memory_run.seconds:.2f} s | {rss:.1f} MiB |")
    results = {
        "records": args.records,
        "runs": args.runs,
        "python": "3.13",
        "versions": {side.name: side.version for side in sides},
        "seconds": {name: [r.seconds for r in runs] for name, runs in speed.items()},
        "max_rss_kb": {name: [r.max_rss_kb for r in runs] for name, runs in speed.items()},
        "ratio": ratio,
        "startup_seconds": {name: [r.seconds for r in runs] for name, runs in startup.items()},
        "memory": {
            name: None if run is None else {"seconds": run.seconds, "max_rss_kb": run.max_rss_kb}
            for name, run in memory.items()
        },
    }
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
