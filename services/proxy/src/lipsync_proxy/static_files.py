"""Which file of the static directory a URL path names, and its content type.

`/` is the client's `index.html`; the seed's URL `/grpc-lipsync-client.html` serves it too unless the
directory has a file of that name. Directories are never listed, dotfiles never served, and a path
that resolves outside the directory (`..`, an encoded `%2e%2e`, a symlink) is not found.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

INDEX = "index.html"
SEED_CLIENT = "grpc-lipsync-client.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".webmanifest": "application/manifest+json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def content_type(path: Path) -> str:
    """The Content-Type header of a static file."""
    return CONTENT_TYPES.get(path.suffix.lower(), DEFAULT_CONTENT_TYPE)


def resolve(static_dir: Path, url_path: str) -> Path | None:
    """The file under `static_dir` that `url_path` (without its query) names, or None (404)."""
    decoded = unquote(url_path)
    if not decoded.startswith("/") or "\x00" in decoded or "\\" in decoded:
        return None
    parts = [part for part in decoded.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return None
    root = static_dir.resolve()
    if not parts:
        parts = [INDEX]
    candidate = root.joinpath(*parts)
    if parts == [SEED_CLIENT] and not candidate.is_file():
        candidate = root / INDEX
    if candidate.is_dir():
        candidate = candidate / INDEX
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    return real


def read(static_dir: Path, url_path: str) -> tuple[bytes, str] | None:
    """The body and content type of the file `url_path` names (`resolve`), or None (404)."""
    found = resolve(static_dir, url_path)
    try:
        return None if found is None else (found.read_bytes(), content_type(found))
    except OSError:
        return None
