"""The client through nginx over TLS, as deployed: the project's nginx config (the one the image
bakes in and the chart renders) serves static/ and upgrades /wss to the proxy. Only what the chart
itself changes (the upstream addresses), the ports, the certificate and the paths are replaced to
run it on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT, wait_until

from ..processes import ProxyProcess, ServerProcess
from .harness import IN_CI, REPO, STATIC_DIR, ClientPage, expect

pytestmark = pytest.mark.integration

NGINX_CONF = REPO / "deploy" / "helm" / "lipsync" / "files" / "nginx.conf"


@dataclass(frozen=True)
class Nginx:
    https_port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


@pytest.fixture(scope="module")
def nginx(
    client_proxy: ProxyProcess, real_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx with the deployment's config on loopback ports, a fresh self-signed certificate."""
    missing = [tool for tool in ("nginx", "openssl") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not installed (Debian: apt-get install nginx openssl)"
        if IN_CI:
            pytest.fail(f"the TLS browser test must run in CI: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("nginx")
    # Run as root, nginx's workers are nobody: they must reach the base-video cache below `root`.
    for directory in (root, *root.parents):
        if directory == Path(tempfile.gettempdir()):
            break
        directory.chmod(directory.stat().st_mode | 0o011)
    key, certificate = root / "tls.key", root / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=localhost", "-days", "1", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    https_port = free_port()
    conf = render(NGINX_CONF.read_text(), root, client_proxy, real_server, free_port(), https_port)
    (root / "nginx.conf").write_text(conf)
    log = (root / "nginx.log").open("wb")
    process = subprocess.Popen(
        ["nginx", "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: listening(https_port) or process.poll() is not None, 10 * TIME_UNIT, "nginx")
        assert process.poll() is None, (root / "nginx.log").read_text()
        yield Nginx(https_port)
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10 * TIME_UNIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def render(
    conf: str, root: Path, proxy: ProxyProcess, server: ServerProcess, http_port: int, https_port: int
) -> str:
    """The deployment's nginx config, pointed at loopback processes and files under `root`."""
    # In this order: `root` itself may be under /tmp.
    replacements = {
        "/tmp/": f"{root}/",
        "server lipsync-proxy:8086;": f"server 127.0.0.1:{proxy.port};",
        "server lipsync-server:50051;": f"server {server.address};",
        "listen 8080;": f"listen 127.0.0.1:{http_port};",
        "listen 8443 ssl": f"listen 127.0.0.1:{https_port} ssl",
        "/etc/nginx/tls/": f"{root}/",
        "root /srv/lipsync/static;": f"root {STATIC_DIR};",
    }
    for old, new in replacements.items():
        assert old in conf, f"{NGINX_CONF} no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    return conf


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_the_client_plays_frames_through_nginx_over_tls(tls_client: ClientPage, nginx: Nginx) -> None:
    page = tls_client.page

    tls_client.open(f"{nginx.url}/")

    expect(page.locator("#ws-url")).to_have_value(f"wss://127.0.0.1:{nginx.https_port}/ws")
    expect(page.locator("#connection-text")).to_have_text("Connected · lipsync.v2")
    expect(page.locator("#model-input")).to_have_value("demo")
    first = tls_client.canvas_digest()
    page.click("#play-button")
    tls_client.wait_for_number("m-frames", 25)
    page.click("#play-button")
    assert tls_client.canvas_digest() != first
    assert tls_client.number("m-errors") == 0
    assert tls_client.errors == []


def test_nginx_serves_the_client_at_the_seeds_url(tls_client: ClientPage, nginx: Nginx) -> None:
    tls_client.open(f"{nginx.url}/grpc-lipsync-client.html")

    expect(tls_client.page.locator("#model-input")).to_have_value("demo")
    assert tls_client.errors == []


def test_the_microphone_works_on_the_tls_page(tls_client: ClientPage, nginx: Nginx) -> None:
    page = tls_client.page
    tls_client.open(f"{nginx.url}/")
    shown = tls_client.number("m-frames")

    page.click("#mic-button")
    tls_client.wait_for_number("m-frames", shown + 10)
    page.click("#mic-button")

    expect(page.locator("#activity-log")).to_contain_text("Live session ended")
    assert tls_client.errors == []


def test_the_client_plays_video_output_through_nginx_over_tls(tls_client: ClientPage, nginx: Nginx) -> None:
    page = tls_client.page
    tls_client.open(f"{nginx.url}/")
    expect(page.locator("#activity-log")).to_contain_text("Base video of demo: H.264")

    page.click("#play-button")
    expect(page.locator("#badge-delivery")).to_have_text("video H.264")
    tls_client.wait_for_number("m-frames", 25)
    page.click("#play-button")

    assert tls_client.number("m-errors") == 0
    assert tls_client.errors == []
