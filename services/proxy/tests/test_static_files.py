"""URL paths to files of the static directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lipsync_proxy.static_files import content_type, read, resolve


@pytest.fixture
def root(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    (static / "index.html").write_text("index")
    (static / "js" / "client.js").write_text("js")
    (static / ".hidden").write_text("hidden")
    (tmp_path / "outside.txt").write_text("outside")
    (static / "link.txt").symlink_to(tmp_path / "outside.txt")
    (static / "inner-link.js").symlink_to(static / "js" / "client.js")
    return static


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "index.html"),
        ("/index.html", "index.html"),
        ("/grpc-lipsync-client.html", "index.html"),
        ("/js/client.js", "js/client.js"),
        ("/js//client.js", "js/client.js"),
        ("/js/%63lient.js", "js/client.js"),
        ("/inner-link.js", "js/client.js"),
    ],
)
def test_a_path_names_its_file(root: Path, path: str, expected: str) -> None:
    assert resolve(root, path) == (root / expected).resolve()


@pytest.mark.parametrize(
    "path",
    [
        "/js",
        "/js/",
        "/missing",
        "/.hidden",
        "/js/../.hidden",
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/js/..%2f..%2foutside.txt",
        "/link.txt",
        "/..\\outside.txt",
        "/index.html%00.js",
        "relative.html",
    ],
)
def test_no_listing_no_dotfiles_and_nothing_outside(root: Path, path: str) -> None:
    assert resolve(root, path) is None


def test_the_seeds_client_url_serves_its_own_file_when_there_is_one(root: Path) -> None:
    (root / "grpc-lipsync-client.html").write_text("seed")
    assert resolve(root, "/grpc-lipsync-client.html") == (root / "grpc-lipsync-client.html").resolve()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", "text/html; charset=utf-8"),
        ("a.JS", "text/javascript; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.svg", "image/svg+xml"),
        ("a.wasm", "application/wasm"),
        ("a.bin", "application/octet-stream"),
    ],
)
def test_content_types_follow_the_extension(name: str, expected: str) -> None:
    assert content_type(Path(name)) == expected


def test_a_file_is_read_with_its_content_type_and_a_path_that_names_none_reads_nothing(root: Path) -> None:
    assert read(root, "/js/client.js") == (b"js", "text/javascript; charset=utf-8")
    assert read(root, "/missing") is None
