"""The server's exceptions. Every failure a caller can cause is one of these, with a safe message."""

from __future__ import annotations

from pathlib import Path


class LipsyncError(Exception):
    """Base class of the server's errors; the message is safe to send to a client."""


class PackageError(LipsyncError):
    """A model package is broken: names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class ModelNotFoundError(LipsyncError):
    """No model of that name; the message lists the available ones."""

    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(f"model {name!r} not found; available models: {listed}")
        self.name = name
        self.available = sorted(available)


class ModelUnavailableError(LipsyncError):
    """The model exists but is still loading (or failed to load)."""


class FrameOutOfRangeError(LipsyncError):
    """A frame id outside [0, frame_count)."""

    def __init__(self, model: str, frame_id: int, frame_count: int) -> None:
        super().__init__(f"frame_id {frame_id} is outside [0, {frame_count}) for model {model!r}")


class InvalidArgumentError(LipsyncError):
    """A malformed request field (audio, size, quality, ...)."""


class OverloadedError(LipsyncError):
    """Too much work queued; the caller should back off."""


class FailedPreconditionError(LipsyncError):
    """The request is valid but the model cannot answer it (e.g. audio of a package that has none)."""


class PermissionDeniedError(LipsyncError):
    """An admin call that is disabled, or a path outside the models root."""


class UnsupportedEngineError(PackageError):
    """A package whose engine this server cannot run."""
