"""A loopback HTTP server that implements the Hub API calls huggingface_hub makes to download files.

It serves, on 127.0.0.1 only:

    HEAD/GET /{repo}/resolve/{revision}/{filename}    file bytes, with Range support
    GET /api/models/{repo}[/revision/{revision}]      model info with the commit `sha`
    GET /api/models/{repo}/tree/{revision}            file listing

Errors carry the `X-Error-Code` header (RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo) that huggingface_hub maps to its exception types.
Large-file headers follow the Hub's LFS responses: `X-Linked-Etag` is the
file's sha256 and `X-Linked-Size` its size. Xet is never advertised.

Faults are set per file name through `HubState.faults`: serve other bytes,
cut the body at an offset, or pace the body so a test can kill a client
mid-download. Every request is recorded, so a test can assert that a run sent
none.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.checkpoints import TINY_COMMIT

TINY_REPO = "tests/tiny-ner"
TINY_TAG = "v1.0"
_CHUNK = 16 * 1024
# Files at or above this size get the response headers of LFS files, with X-Linked-* headers.
_LFS_THRESHOLD = 10 * 1024


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str
    refs: dict[str, str]
    token: str | None = None
    """When set, the repository is gated: requests must send `Authorization: Bearer <token>`."""


@dataclass
class Fault:
    """What goes wrong when one file's body is sent."""

    body: bytes | None = None
    """Bytes to send in place of the file, with headers that match them."""
    cut_at: int | None = None
    """Offset in the file past which no byte is sent; the connection closes there."""
    cuts_left: int | None = None
    """How many GET responses are cut at `cut_at`; None cuts every one."""
    delay: float = 0.0
    """Seconds to wait after each 16 KiB chunk."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class HubState:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    body_started: threading.Event = field(default_factory=threading.Event)
    """Set once the body of a file with a fault has started to go out."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_repo(self, repo_id: str, folder: Path, *, commit: str = TINY_COMMIT, refs: dict[str, str] | None = None, token: str | None = None) -> HubRepo:
        """Serve every file of FOLDER as REPO_ID at COMMIT; REFS maps branches and tags to commits."""
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        repo = HubRepo(files=files, commit=commit, refs=refs if refs is not None else {"main": commit}, token=token)
        self.repos[repo_id] = repo
        return repo

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def take_cut(self, filename: str) -> int | None:
        """Return the offset at which this response must stop, counting down `cuts_left`."""
        with self.lock:
            fault = self.faults.get(filename)
            if fault is None or fault.cut_at is None:
                return None
            if fault.cuts_left is not None:
                if fault.cuts_left <= 0:
                    return None
                fault.cuts_left -= 1
            return fault.cut_at

    def gets(self, filename: str) -> list[RecordedRequest]:
        """Return the GET requests for FILENAME under any repository and revision."""
        with self.lock:
            return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + filename)]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        pass

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def _dispatch(self, *, send_body: bool) -> None:
        state = self.server.state
        state.record(RecordedRequest(self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(parts[2:], send_body=send_body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), send_body=send_body)
        else:
            self._error(404, None, "Not found")

    # --- repository checks ---------------------------------------------------

    def _open(self, repo_id: str, revision: str | None) -> tuple[HubRepo, str] | None:
        """Return the repository and the commit REVISION names, or send the Hub's error and return None."""
        repo = self.server.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo.token is not None:
            sent = self.headers.get("Authorization")
            if sent != f"Bearer {repo.token}":
                status = 401 if sent is None else 403
                self._error(status, "GatedRepo", "Access to this model is restricted")
                return None
        commit = repo.refs.get(revision or "main") or (revision if revision == repo.commit else None)
        if commit is None:
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo, commit

    def _error(self, status: int, code: str | None, message: str, *, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # --- API -----------------------------------------------------------------

    def _api(self, parts: list[str], *, send_body: bool) -> None:
        repo_id = f"{parts[0]}/{parts[1]}"
        kind = parts[2] if len(parts) > 2 else None
        revision = parts[3] if len(parts) > 3 else None
        if kind not in (None, "revision", "tree") or (kind and revision is None):
            self._error(404, None, "Not found")
            return
        opened = self._open(repo_id, revision)
        if opened is None:
            return
        repo, commit = opened
        if kind == "tree":
            document: object = [self._tree_entry(name, data) for name, data in repo.files.items()]
        else:
            siblings = [{"rfilename": name} for name in repo.files]
            document = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "gated": bool(repo.token), "siblings": siblings, "tags": []}
        self._json(document, send_body=send_body)

    @staticmethod
    def _tree_entry(name: str, data: bytes) -> dict:
        entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
        if len(data) >= _LFS_THRESHOLD:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _json(self, document: object, *, send_body: bool) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    # --- file downloads ------------------------------------------------------

    def _resolve(self, repo_id: str, revision: str, filename: str, *, send_body: bool) -> None:
        opened = self._open(repo_id, revision)
        if opened is None:
            return
        repo, commit = opened
        if filename not in repo.files:
            self._error(404, "EntryNotFound", f"{filename} does not exist", commit=commit)
            return

        original = repo.files[filename]
        fault = self.server.state.faults.get(filename)
        data = fault.body if fault is not None and fault.body is not None else original
        start, end = self._range(len(data))
        self.send_response(206 if self.headers.get("Range") else 200)
        self._file_headers(original, served=data, commit=commit)
        if self.headers.get("Range"):
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if send_body:
            self._send_body(filename, data, start, end, fault)

    def _file_headers(self, original: bytes, *, served: bytes, commit: str) -> None:
        # The ETag names the cache blob. It stays the one of the real file when
        # a fault serves other bytes, as a broken mirror or transfer would.
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if len(original) >= _LFS_THRESHOLD:
            sha256 = hashlib.sha256(original).hexdigest()
            self.send_header("ETag", f'"{sha256}"')
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(served)))
        else:
            self.send_header("ETag", f'"{git_blob_sha1(original)}"')

    def _range(self, size: int) -> tuple[int, int]:
        """Return [start, end) of the requested `Range: bytes=N-` or `bytes=N-M`, or the whole file."""
        header = self.headers.get("Range")
        if not header or not header.startswith("bytes="):
            return 0, size
        first, _, last = header[len("bytes="):].partition("-")
        start = int(first) if first else 0
        end = int(last) + 1 if last else size
        return min(start, size), min(end, size)

    def _send_body(self, filename: str, data: bytes, start: int, end: int, fault: Fault | None) -> None:
        state = self.server.state
        cut_at = state.take_cut(filename)
        stop = min(end, cut_at) if cut_at is not None else end
        delay = fault.delay if fault is not None else 0.0
        try:
            for offset in range(start, stop, _CHUNK):
                self.wfile.write(data[offset : min(offset + _CHUNK, stop)])
                self.wfile.flush()
                if fault is not None:
                    state.body_started.set()
                if delay:
                    time.sleep(delay)
            if stop < end:
                self._drop_connection()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop_connection(self) -> None:
        """Close the socket before the announced Content-Length is reached, as a dropped connection does."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """A running loopback Hub; `url` is the value for HF_ENDPOINT."""

    def __init__(self, state: HubState | None = None) -> None:
        self.state = state or HubState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port, so that later requests are refused."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


@pytest.fixture
def hub_server():
    """A loopback Hub with no repositories; add them through `hub_server.state.add_repo`."""
    server = HubServer()
    yield server
    server.stop()


@pytest.fixture
def tiny_hub(hub_server, tiny_checkpoint, monkeypatch) -> HubServer:
    """The loopback Hub serving the tiny checkpoint as `tests/tiny-ner` (branch main, tag v1.0), with HF_ENDPOINT set to it."""
    hub_server.state.add_repo(TINY_REPO, tiny_checkpoint, refs={"main": TINY_COMMIT, TINY_TAG: TINY_COMMIT})
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    return hub_server
