"""How the `osa` command line talks to its user.

Everything here writes to one stream, stderr by default, so stdout carries only data
(JSON, tables) that scripts read. On a terminal the output uses colour, symbols and a
redrawn progress line; it is plain text, one line per event, when the stream is not a
terminal or `NO_COLOR`, `CI` or `TERM=dumb` is set (`UI.create(force_plain=True)`
forces it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["UI", "Task", "plain_output"]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_GREEN = "\x1b[32m"
_YELLOW = "\x1b[33m"
_CLEAR_LINE = "\r\x1b[2K"
_BAR_WIDTH = 24


def plain_output(stream: TextIO) -> bool:
    """Whether output to `stream` should be plain (no colour, no redrawn lines)."""
    if os.environ.get("NO_COLOR") or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return True
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


@dataclass
class UI:
    """A writer of user-facing messages on one stream.

    Attributes:
        file: where messages go (stderr unless told otherwise).
        plain: no colour and no redrawn progress lines.
        verbose: stream the output of subprocesses (image builds) line by line.
    """

    file: TextIO
    plain: bool
    verbose: bool = False

    @classmethod
    def create(
        cls, *, file: TextIO | None = None, force_plain: bool = False, verbose: bool = False
    ) -> UI:
        """A UI on `file` (default stderr), plain when forced or when the stream wants it."""
        stream = sys.stderr if file is None else file
        return cls(file=stream, plain=force_plain or plain_output(stream), verbose=verbose)

    def _style(self, text: str, *styles: str) -> str:
        if self.plain or not styles:
            return text
        return "".join(styles) + text + _RESET

    def _write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def heading(self, text: str) -> None:
        """A line that opens a command's output (`Deploying to ...`)."""
        self._write(self._style(text, _BOLD))

    def info(self, text: str) -> None:
        """A plain message."""
        self._write(text)

    def detail(self, text: str) -> None:
        """A secondary, indented line (a next step, a hint of what was done)."""
        self._write("  " + self._style(text, _DIM))

    def success(self, text: str) -> None:
        """A line announcing that something worked."""
        self._write(self._style("✓", _GREEN) + " " + text)

    def warning(self, text: str) -> None:
        """A line about something that worked with a caveat."""
        self._write(self._style("! " + text, _YELLOW))

    def error(self, message: str, *, cause: str | None = None, hint: str | None = None) -> None:
        """A failure: what failed, why (indented cause) and what to do (hint)."""
        self._write(self._style("error: ", _RED, _BOLD) + message)
        if cause:
            for line in cause.rstrip().splitlines():
                self._write("  " + line)
        if hint:
            self._write(self._style("hint: ", _YELLOW) + hint)

    @contextmanager
    def task(self, label: str) -> Iterator[Task]:
        """A step with a start, optional progress and an end (`✓ label (detail)`).

        The step ends as failed (`✗ label`) when the block raises; the exception
        propagates.
        """
        task = Task(ui=self, label=label)
        task.start()
        try:
            yield task
        except BaseException:
            task.fail()
            raise
        task.finish()


@dataclass
class Task:
    """One step shown by `UI.task`: details and progress while it runs, a result line."""

    ui: UI
    label: str
    _detail: str | None = field(default=None, repr=False)
    _ended: bool = field(default=False, repr=False)
    _live: bool = field(default=False, repr=False)

    def start(self) -> None:
        """Shows that the step began."""
        if self.ui.plain:
            self.ui._write(f"... {self.label}")
        else:
            self._redraw(self.ui._style("…", _DIM) + " " + self.label)

    def _redraw(self, line: str) -> None:
        self.ui.file.write(_CLEAR_LINE + line)
        self.ui.file.flush()
        self._live = True

    def _end_line(self) -> None:
        if self._live:
            self.ui.file.write(_CLEAR_LINE)
            self._live = False

    def detail(self, text: str) -> None:
        """What the step is doing now (`building`, `pushing`)."""
        self._detail = text
        if self.ui.plain:
            self.ui._write(f"    {self.label}: {text}")
        else:
            self._redraw(self.ui._style("…", _DIM) + f" {self.label} " + self.ui._style(text, _DIM))

    def progress(self, done: int, total: int, text: str = "") -> None:
        """Progress as `done` of `total` units (a bar on a terminal; plain: one line each)."""
        total = max(total, 1)
        done = min(max(done, 0), total)
        if self.ui.plain:
            self.ui._write(f"    {self.label}: {done}/{total} {text}".rstrip())
            return
        filled = round(_BAR_WIDTH * done / total)
        bar = "█" * filled + "░" * (_BAR_WIDTH - filled)
        tail = self.ui._style(text[:60], _DIM) if text else ""
        self._redraw(f"… {self.label} {bar} {done}/{total} {tail}".rstrip())

    def output(self, line: str) -> None:
        """A line of a subprocess's output (shown only when the UI is verbose)."""
        if self.ui.verbose:
            self._end_line()
            self.ui._write("    " + self.ui._style(line, _DIM))

    def done(self, detail: str | None = None) -> None:
        """Ends the step as successful, with an optional result (`sha256:1a2b…`)."""
        if self._ended:
            return
        self._ended = True
        self._end_line()
        suffix = f" ({detail})" if detail else ""
        self.ui.success(self.label + suffix)

    def fail(self, detail: str | None = None) -> None:
        """Ends the step as failed."""
        if self._ended:
            return
        self._ended = True
        self._end_line()
        suffix = f" ({detail})" if detail else ""
        self.ui._write(self.ui._style("✗", _RED) + " " + self.label + suffix)

    def finish(self) -> None:
        """Ends the step as successful unless it already ended."""
        self.done(self._detail if self._detail not in (None, "") else None)
