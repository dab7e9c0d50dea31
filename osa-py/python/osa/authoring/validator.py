"""`Reject`: how a hook rejects a record."""

from __future__ import annotations


class Reject(Exception):  # noqa: N818 - the published name
    """Raised by a hook to reject the record; the message is the reason.

    In `osa-run-hook` the record goes to `rejections.jsonl`; with
    `osa.testing.run_hook` the exception propagates to the test.
    """
