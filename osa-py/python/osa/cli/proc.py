"""Running a subprocess with its output read line by line (image builds, pushes)."""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TAIL_LINES", "ProcResult", "run_streamed"]

#: Lines of output kept for an error message.
TAIL_LINES = 30


@dataclass(frozen=True)
class ProcResult:
    """How a subprocess ended.

    Attributes:
        returncode: its exit status.
        output: the last `TAIL_LINES` lines of its merged stdout and stderr.
    """

    returncode: int
    output: str


def run_streamed(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    tail: int = TAIL_LINES,
) -> ProcResult:
    """Runs `argv`, passing each output line (stdout and stderr merged) to `on_line`.

    Memory stays bounded: only the last `tail` lines are kept.

    Raises:
        FileNotFoundError: the program does not exist.
    """
    kept: collections.deque[str] = collections.deque(maxlen=max(tail, 1))
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            kept.append(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    return ProcResult(returncode=returncode, output="\n".join(kept))
