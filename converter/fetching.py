"""Download a recipe's source files from the Hub, verify them and place them in source/.

Downloads go through huggingface_hub, so its cache, its per-blob locks and its
progress bars apply. Each file is checked against the recipe's size and
sha384/sha256 pin before it is placed in `source/` as a real file (a hard link
or a copy, never a symlink into the cache). The record written last to
`source.json` states the requested revision and the commit hash it resolved to.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub import errors as hub_errors
from huggingface_hub.utils import tqdm as hub_tqdm

from converter.errors import (
    FetchError,
    GatedRepoError,
    HubUnreachableError,
    IntegrityError,
    OfflineCacheMissError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UsageError,
)
from converter.files import copy_atomic, file_digest, read_json, write_json_atomic
from converter.layout import Layout
from converter.recipe import Recipe, SourceFile

log = logging.getLogger(__name__)

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    """Hub connection settings, read from the environment when a fetch starts."""

    endpoint: str
    cache_dir: Path
    token: str | None
    offline: bool
    progress_bars: bool


def hub_settings(*, offline: bool = False) -> HubSettings:
    """Read HF_ENDPOINT, HF_HOME/HF_HUB_CACHE, HF_TOKEN and HF_HUB_OFFLINE as huggingface_hub does.

    huggingface_hub reads these variables once, when it is imported. Reading
    them here, on every call, makes a change of the environment between two
    fetches in one process take effect.
    """
    environ = os.environ
    home = _expand(environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"))
    cache_dir = _expand(environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub"))
    return HubSettings(
        endpoint=(environ.get("HF_ENDPOINT") or constants._HF_DEFAULT_ENDPOINT).rstrip("/"),
        cache_dir=Path(cache_dir),
        token=_token(home),
        offline=offline or _is_true(environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE")),
        progress_bars=not _is_true(environ.get("HF_HUB_DISABLE_PROGRESS_BARS")),
    )


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def _is_true(value: str | None) -> bool:
    return value is not None and value.upper() in _TRUE_VALUES


def _token(home: str) -> str | None:
    """Return HF_TOKEN, else the token saved by `hf auth login`, else None."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        token_path = Path(_expand(os.environ.get("HF_TOKEN_PATH") or os.path.join(home, "token")))
        try:
            token = token_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    return token.strip() or None


# --- public API -----------------------------------------------------------


def fetch(recipe: Recipe, layout: Layout, *, revision: str | None = None, offline: bool = False, force: bool = False) -> dict:
    """Download, verify and place the recipe's source files, and return the source record.

    Does nothing, and sends no request, when `source/` already contains every file
    verified for the same repository and revision (unless FORCE). Callers that
    run several processes on one model hold `converter.files.model_lock`
    around this call, because this function does not take it.
    """
    requested = revision or recipe.source.revision
    settings = hub_settings(offline=offline)
    if force and settings.offline:
        raise UsageError("--force needs the network, but offline mode is on", hint="Drop --force, or drop --offline and unset HF_HUB_OFFLINE")

    if not force:
        record = _verified_record(recipe, layout, revision=requested)
        if record is not None:
            for entry in recipe.source.files:
                log.info("%s: skipped, already verified in %s", entry.name, layout.source_dir)
            return record

    # Remove the record first, so that an interrupted fetch never leaves a
    # record next to files it has not verified.
    layout.source_record.unlink(missing_ok=True)
    repo = recipe.source.repo
    mode = "offline, from the cache" if settings.offline else settings.endpoint
    log.info("fetching %s (%s)", repo, mode)
    commit_hash = _resolve_commit(repo, requested, settings)
    log.info("%s: revision %s -> commit %s", repo, requested, commit_hash)

    for entry in recipe.source.files:
        cached = _download(repo, entry, commit_hash=commit_hash, settings=settings, force=force)
        _verify_download(entry, cached)
        copy_atomic(cached, layout.source_dir / entry.name)
        log.info("%s: verified (%d bytes, %s)", entry.name, entry.size, entry.hash_algorithm)

    record = _record(recipe, revision=requested, commit_hash=commit_hash)
    write_json_atomic(layout.source_record, record)
    return record


def read_source_record(layout: Layout) -> dict | None:
    """Return the record in `source.json`, or None when it is missing or malformed."""
    record = read_json(layout.source_record)
    if not isinstance(record, dict) or not {"repo", "revision", "commit_hash", "files"} <= record.keys():
        return None
    if not isinstance(record["files"], list):
        return None
    return record


def ensure_source(recipe: Recipe, layout: Layout) -> dict:
    """Return the source record when `source/` is complete, else fetch.

    Complete means: the record pins the same hashes as the recipe and every
    file has the recorded size. Hashes are not recomputed here, because `fetch`
    verified them when it placed the files.
    """
    record = read_source_record(layout)
    if record is not None and _record_matches(record, recipe) and _sizes_match(recipe, layout):
        return record
    return fetch(recipe, layout)


# --- skipping verified files ----------------------------------------------


def _pins(recipe: Recipe) -> list[dict]:
    return [{"name": f.name, "size": f.size, f.hash_algorithm: f.hash_value} for f in recipe.source.files]


def _record(recipe: Recipe, *, revision: str, commit_hash: str) -> dict:
    return {"repo": recipe.source.repo, "revision": revision, "commit_hash": commit_hash, "files": _pins(recipe)}


def _record_matches(record: dict, recipe: Recipe) -> bool:
    return record["repo"] == recipe.source.repo and record["files"] == _pins(recipe)


def _sizes_match(recipe: Recipe, layout: Layout) -> bool:
    for entry in recipe.source.files:
        path = layout.source_dir / entry.name
        if path.is_symlink() or not path.is_file() or path.stat().st_size != entry.size:
            return False
    return True


def _verified_record(recipe: Recipe, layout: Layout, *, revision: str) -> dict | None:
    """Return the record when it matches REVISION and every placed file matches its pin."""
    record = read_source_record(layout)
    if record is None or record["revision"] != revision or not _record_matches(record, recipe):
        return None
    if not _sizes_match(recipe, layout):
        return None
    for entry in recipe.source.files:
        if file_digest(layout.source_dir / entry.name, entry.hash_algorithm) != entry.hash_value:
            log.warning("%s: placed file no longer matches its %s pin, fetching again", entry.name, entry.hash_algorithm)
            return None
    return record


# --- talking to the Hub ---------------------------------------------------


def _resolve_commit(repo: str, revision: str, settings: HubSettings) -> str:
    """Resolve a branch or tag to a commit hash. Offline, read it from the cache's refs/ folder."""
    api = HfApi(endpoint=settings.endpoint, token=settings.token or False)
    with _hub_errors(repo=repo, revision=revision, filename=None, settings=settings):
        resolved = api.resolve_revision(
            repo, revision=revision, cache_dir=settings.cache_dir, local_files_only=settings.offline, token=settings.token or False
        )
    return resolved.resolved


def _download(repo: str, entry: SourceFile, *, commit_hash: str, settings: HubSettings, force: bool) -> Path:
    """Return the cached path of ENTRY at COMMIT_HASH, downloading it when the cache lacks it.

    A dropped connection is retried within the call, resuming with a Range
    request from the last whole 10 MiB chunk.
    NOTE: huggingface_hub 2.4 writes each download to a process-unique
    `<etag>.<id>.incomplete` file and never reuses it, so a killed process
    leaves that file behind and the next run downloads from the start.
    Removing those files needs the blob's lock in `.locks/`.
    """
    with _hub_errors(repo=repo, revision=commit_hash, filename=entry.name, settings=settings):
        path = hf_hub_download(
            repo,
            entry.name,
            revision=commit_hash,
            cache_dir=settings.cache_dir,
            endpoint=settings.endpoint,
            token=settings.token or False,
            local_files_only=settings.offline,
            force_download=force,
            tqdm_class=None if settings.progress_bars else _SilentProgressBar,
        )
    return Path(path)


class _SilentProgressBar(hub_tqdm):
    """Progress bar that never draws, used when HF_HUB_DISABLE_PROGRESS_BARS is set after import."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _verify_download(entry: SourceFile, cached: Path) -> None:
    """Check the cached file against the recipe's pin. On a mismatch, evict it from the cache and raise."""
    blob = Path(os.path.realpath(cached))
    size = blob.stat().st_size
    if size != entry.size:
        _evict(cached, blob)
        raise IntegrityError(entry.name, "size", entry.size, size, hint=_INTEGRITY_HINT)

    digest = file_digest(blob, entry.hash_algorithm)
    if digest != entry.hash_value:
        _evict(cached, blob)
        raise IntegrityError(entry.name, entry.hash_algorithm, entry.hash_value, digest, hint=_INTEGRITY_HINT)


_INTEGRITY_HINT = (
    "The mismatching file was removed from the Hugging Face cache and not placed in source/. "
    "Run fetch again. If the mismatch repeats, the file at this revision differs from the recipe's pin: "
    "check source.revision and the pins in the recipe"
)


def _evict(pointer: Path, blob: Path) -> None:
    """Delete a bad blob and its snapshot entry, so that the next run downloads the file again."""
    blob.unlink(missing_ok=True)
    pointer.unlink(missing_ok=True)
    log.warning("%s: removed the mismatching file from the cache", blob)


@contextlib.contextmanager
def _hub_errors(*, repo: str, revision: str, filename: str | None, settings: HubSettings) -> Iterator[None]:
    """Turn huggingface_hub and transport exceptions into FetchError subtypes with a hint."""
    target = f"{repo}@{revision}" + (f": {filename}" if filename else "")
    try:
        yield
    except (hub_errors.LocalEntryNotFoundError, hub_errors.RevisionResolutionError, hub_errors.OfflineModeIsEnabled) as error:
        # huggingface_hub wraps an HTTP error that it could not serve from the
        # cache (a 5xx, a 403 without an error code) into these exceptions.
        cause = error.__cause__
        if isinstance(cause, hub_errors.HfHubHTTPError) and not settings.offline:
            raise _http_error(cause, repo=repo, revision=revision, filename=filename, settings=settings) from error
        raise _cache_miss_or_unreachable(target, settings) from error
    except hub_errors.HfHubHTTPError as error:
        raise _http_error(error, repo=repo, revision=revision, filename=filename, settings=settings) from error
    except httpx2.TransportError as error:
        raise HubUnreachableError(
            f"{target}: connection to {settings.endpoint} failed ({type(error).__name__}: {error})",
            hint="Run fetch again: finished files stay in the cache. Check the network, or set HF_ENDPOINT to a reachable mirror",
        ) from error
    except ValueError as error:
        # With force_download, huggingface_hub turns a failed request into
        # ValueError("Force download failed ...") and keeps the cause.
        if not str(error).startswith("Force download failed"):
            raise
        raise HubUnreachableError(
            f"{target}: --force needs the Hub, but the download from {settings.endpoint} failed ({error.__cause__ or error})",
            hint="Check the network or HF_ENDPOINT, or run fetch without --force to use the verified files",
        ) from error
    except OSError as error:
        # http_get raises a bare OSError when fewer bytes arrive than the
        # server announced ("Consistency check failed"). Other OSErrors are
        # local problems and keep their traceback.
        if "Consistency check failed" not in str(error):
            raise
        raise FetchError(f"{target}: download incomplete ({error})", hint="Run fetch again") from error


def _cache_miss_or_unreachable(target: str, settings: HubSettings) -> FetchError:
    if settings.offline:
        return OfflineCacheMissError(
            f"{target}: not in the Hugging Face cache {settings.cache_dir}, and offline mode is on",
            hint="Run once without --offline and with HF_HUB_OFFLINE unset to download it, or set HF_HUB_CACHE to a cache that contains it",
        )
    return HubUnreachableError(
        f"{target}: cannot reach the Hub at {settings.endpoint} and the cache {settings.cache_dir} does not contain it",
        hint="Check the network connection, set HF_ENDPOINT to a reachable mirror, or pass --offline with a cache that contains the files",
    )


def _http_error(error: hub_errors.HfHubHTTPError, *, repo: str, revision: str, filename: str | None, settings: HubSettings) -> FetchError:
    status = error.response.status_code if error.response is not None else None
    token_state = "HF_TOKEN is set but its token has no access" if settings.token else "no token is set"
    denied = status in (401, 403) and not isinstance(error, hub_errors.RepositoryNotFoundError)
    if isinstance(error, hub_errors.GatedRepoError) or denied:
        return GatedRepoError(
            f"{repo}: access denied (HTTP {status}), the repository is gated or private and {token_state}",
            hint="Accept the repository's conditions on the Hub, then set HF_TOKEN to a token of that account",
        )
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        return RepoNotFoundError(
            f"{repo}: repository not found at {settings.endpoint} (HTTP {status})",
            hint="Check source.repo in the recipe and HF_ENDPOINT. If the repository is private, set HF_TOKEN",
        )
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return RevisionNotFoundError(
            f"{repo}: revision {revision!r} not found",
            hint="Pass an existing branch, tag or 40-hex commit hash with --revision, or fix source.revision in the recipe",
        )
    if isinstance(error, hub_errors.RemoteEntryNotFoundError):
        return RemoteFileNotFoundError(
            f"{repo}@{revision}: file {filename!r} not found in the repository",
            hint="Fix source.files in the recipe, or pass a --revision that contains the file",
        )
    return FetchError(
        f"{repo}@{revision}: the Hub at {settings.endpoint} returned HTTP {status}",
        hint="Retry later, or set HF_ENDPOINT to a mirror",
    )
