"""Typed errors of the `osa` package."""

from __future__ import annotations


class OsaError(Exception):
    """Base class of the errors raised by `osa` itself (never by hook code).

    Attributes:
        hint: what to do about it, when there is something to say.
        cause: the detail behind it (a server's answer, a build log's tail), if any.
    """

    def __init__(self, message: str, *, hint: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.cause = cause


class DeployError(OsaError):
    """A convention cannot be deployed.

    The docs gate, the engine's rules, authentication, an image build or the server
    refused it.
    """


class ConventionLoadError(OsaError):
    """An entry point of the `osa.conventions` group failed to load."""


class HookResolutionError(OsaError):
    """The hook to run cannot be determined (`OSA_HOOK_NAME`, registry)."""
