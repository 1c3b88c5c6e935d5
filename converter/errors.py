"""Every failure a user can meet, as one typed hierarchy.

The CLI turns any `ConverterError` into a single line on stderr and the
exit code below; nothing else in the package prints errors. Each subtype
carries the values a user needs to act on it.
"""

from __future__ import annotations

from pathlib import Path

# Exit codes, documented in the README. Click itself exits with 2 on a usage
# error (an unknown option, an invalid choice), so 2 is kept for bad usage.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ConverterError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}. {self.hint}"
        return self.message

    def __reduce__(self):
        # Subclasses take other constructor arguments than `args`, so pickling
        # (an error raised in a worker process) restores the state directly.
        return (_restore_error, (type(self), self.args, self.__dict__))


def _restore_error(cls: type, args: tuple, state: dict) -> ConverterError:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class UsageError(ConverterError):
    """A command-line value is invalid (exit code 2)."""

    exit_code = EXIT_USAGE


class RecipeError(ConverterError):
    """A recipe file is missing, unreadable or invalid."""

    def __init__(self, file: str | Path, key: str | None, problem: str, *, hint: str | None = None) -> None:
        location = f"{file}: {key}" if key else str(file)
        super().__init__(f"{location}: {problem}", hint=hint)
        self.file = str(file)
        self.key = key
        self.problem = problem


class RecipeNotFoundError(RecipeError):
    """MODEL is neither a bundled recipe nor a recipe file."""


# --- fetching -------------------------------------------------------------


class FetchError(ConverterError):
    """Downloading a source file from the Hub failed."""


class HubUnreachableError(FetchError):
    """The Hub endpoint could not be reached."""


class RepoNotFoundError(FetchError):
    """The repository does not exist or is private."""


class RevisionNotFoundError(FetchError):
    """The revision is not a branch, tag or commit of the repository."""


class RemoteFileNotFoundError(FetchError):
    """A file listed in the recipe is not in the repository at that revision."""


class GatedRepoError(FetchError):
    """The repository needs a token with access (HTTP 401 or 403)."""


class OfflineCacheMissError(FetchError):
    """Offline mode is on and the cache does not hold a file."""


class IntegrityError(ConverterError):
    """A file's size or hash differs from what the recipe pins."""

    def __init__(self, file: str, check: str, expected: str | int, actual: str | int, *, hint: str | None = None) -> None:
        super().__init__(f"{file}: {check} mismatch: expected {expected}, got {actual}", hint=hint)
        self.file = file
        self.check = check
        self.expected = expected
        self.actual = actual


# --- export and conversion ------------------------------------------------


class CheckpointError(ConverterError):
    """The fetched checkpoint cannot serve the recipe (wrong head, label count, labels)."""


class ExportError(ConverterError):
    """Exporting the checkpoint to ONNX failed or produced a wrong model."""


class ConversionError(ConverterError):
    """Converting ONNX to OpenVINO IR failed."""


class ArtifactError(ConverterError):
    """An artifact is missing or unreadable."""

    def __init__(self, path: str | Path, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {problem}", hint=hint)
        self.path = str(path)


class DiskFullError(ConverterError):
    """Writing an artifact failed because the disk is full."""


# --- checks ---------------------------------------------------------------


class ParityError(ConverterError):
    """At least one backend differs from PyTorch beyond its tolerance."""


class VerifyError(ConverterError):
    """Artifacts on disk differ from the manifest."""


class LockTimeoutError(ConverterError):
    """Another process holds the lock on a model's artifacts for too long."""


# --- inputs of predict and accuracy ---------------------------------------


class InputTextError(ConverterError):
    """Text given to `predict` or to `parity --text-file` cannot be read."""


class DatasetError(ConverterError):
    """A CoNLL data file is malformed."""

    def __init__(self, file: str | Path, line: int | None, problem: str, *, hint: str | None = None) -> None:
        location = f"{file}:{line}" if line is not None else str(file)
        super().__init__(f"{location}: {problem}", hint=hint)
        self.file = str(file)
        self.line = line
