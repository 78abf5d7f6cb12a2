"""The project's nginx config (deploy/helm/lipsync/files/nginx.conf): TLS 1.2+ with forward-secret AEAD
ciphers, HSTS, the origin check on /ws, the size caps, and model loading refused on the public gRPC
path. Read from the file, then proven against a real nginx running it on loopback ports (only the
addresses, ports, certificate and paths are replaced, as the chart and the browser tests do)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from lipsync_protos.lipsync.v1 import lipsync_pb2 as pb
from lipsync_protos.lipsync.v1 import lipsync_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
NGINX_CONF = REPO / "deploy" / "helm" / "lipsync" / "files" / "nginx.conf"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TWO_YEARS_S = 63_072_000


def directives(name: str) -> list[str]:
    """The arguments of every `name` directive in the config, comments left out."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    return [match.strip() for match in re.findall(rf"^\s*{name}\s+([^;]*);", text, flags=re.MULTILINE)]


def test_only_tls_1_2_and_1_3_are_offered() -> None:
    assert directives("ssl_protocols") == ["TLSv1.2 TLSv1.3"]


def test_tls_1_2_uses_forward_secret_aead_ciphers_only() -> None:
    (ciphers,) = directives("ssl_ciphers")
    expanded = subprocess.run(["openssl", "ciphers", ciphers], capture_output=True, text=True, check=True)
    tls12 = [suite for suite in expanded.stdout.strip().split(":") if not suite.startswith("TLS_")]

    assert tls12
    assert all(suite.startswith("ECDHE-") for suite in tls12), tls12
    assert all(re.search(r"GCM|CHACHA20-POLY1305", suite) for suite in tls12), tls12
    assert directives("ssl_session_tickets") == ["off"]


def test_hsts_is_sent_for_two_years_on_every_response() -> None:
    headers = directives("add_header")

    assert f'Strict-Transport-Security "max-age={TWO_YEARS_S}" always' in headers
    assert "X-Content-Type-Options nosniff always" in headers
    assert directives("server_tokens") == ["off"]


def test_bodies_are_capped_except_grpc_streams() -> None:
    assert directives("client_max_body_size") == ["1m", "0"]


# --- a real nginx running the config ---------------------------------------------------------------


@dataclass(frozen=True)
class Nginx:
    https_port: int
    http_port: int
    certificate: Path

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str]]:
        context = ssl.create_default_context(cafile=str(self.certificate))
        connection = http.client.HTTPSConnection("127.0.0.1", self.https_port, context=context, timeout=10)
        try:
            connection.request(method, path, body=body or None, headers=headers or {})
            reply = connection.getresponse()
            reply.read()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}
        finally:
            connection.close()

    def handshake(self, version: ssl.TLSVersion, ciphers: str = "ALL:@SECLEVEL=0") -> tuple[str, str]:
        """(protocol, cipher) of a TLS handshake offering only `version` and `ciphers`; raises
        ssl.SSLError, whose `reason` says whether nginx refused it with an alert."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = context.maximum_version = version
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers(ciphers)
        with (
            socket.create_connection(("127.0.0.1", self.https_port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            protocol, cipher = tls.version(), tls.cipher()
        assert protocol is not None
        assert cipher is not None
        return protocol, cipher[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        reason = f"{name} is not installed (Debian: apt-get install nginx openssl)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx running the project's config on loopback, with nothing behind it (upstreams answer 502)."""
    binary, openssl = _tool("nginx"), _tool("openssl")
    root = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
         "-keyout", str(root / "tls.key"), "-out", str(root / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    https_port, http_port = _free_port(), _free_port()
    replacements = {
        "/tmp/": f"{root}/",
        "server lipsync-proxy:8086;": f"server 127.0.0.1:{_free_port()};",
        "server lipsync-server:50051;": f"server 127.0.0.1:{_free_port()};",
        "listen 8080;": f"listen 127.0.0.1:{http_port};",
        "listen 8443 ssl": f"listen 127.0.0.1:{https_port} ssl",
        "/etc/nginx/tls/": f"{root}/",
        "root /srv/lipsync/static;": f"root {REPO / 'static'};",
    }
    conf = NGINX_CONF.read_text()
    for old, new in replacements.items():
        assert old in conf, f"{NGINX_CONF} no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    (root / "nginx.conf").write_text(conf)
    command = [binary, "-e", "stderr", "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"]
    with (root / "nginx.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _listening(https_port):
            assert process.poll() is None, (root / "nginx.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen within 10 s"
            time.sleep(0.05)
        yield Nginx(https_port, http_port, root / "tls.crt")
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLS 1.0", "TLS 1.1"]
)
def test_nginx_refuses_tls_before_1_2(nginx: Nginx, version: ssl.TLSVersion) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        nginx.handshake(version)
    # The server's alert, not the client library declining to try.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_nginx_refuses_a_cbc_cipher_over_tls_1_2(nginx: Nginx) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        nginx.handshake(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
    assert refused.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLS 1.2", "TLS 1.3"]
)
def test_nginx_speaks_tls_1_2_and_1_3_with_aead_ciphers(nginx: Nginx, version: ssl.TLSVersion) -> None:
    protocol, cipher = nginx.handshake(version, "DEFAULT")

    assert protocol == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert re.search(r"GCM|CHACHA20", cipher), cipher


@pytest.mark.parametrize("path", ["/", "/no-such-file"])
def test_every_response_carries_hsts_and_no_version(nginx: Nginx, path: str) -> None:
    status, headers = nginx.request("GET", path)

    assert status in (200, 404)
    assert headers["strict-transport-security"] == f"max-age={TWO_YEARS_S}"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["server"] == "nginx"


def test_plain_http_only_redirects_to_https(nginx: Nginx) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
    try:
        connection.request("GET", "/ws?x=1", headers={"Host": f"127.0.0.1:{nginx.http_port}"})
        reply = connection.getresponse()
    finally:
        connection.close()

    assert reply.status == 308
    assert reply.getheader("Location", "").startswith("https://127.0.0.1")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("https://127.0.0.1:{port}", True),
        ("https://localhost:3000", True),
        ("https://evil.example", False),
        ("https://127.0.0.1.evil.example:{port}", False),
        ("null", False),
    ],
)
def test_a_websocket_from_a_foreign_page_is_refused_before_the_proxy(
    nginx: Nginx, origin: str | None, allowed: bool
) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Host": f"127.0.0.1:{nginx.https_port}"}
    if origin is not None:
        headers["Origin"] = origin.format(port=nginx.https_port)

    status, _ = nginx.request("GET", "/ws", headers)

    # Allowed ones are passed on to the proxy, which is not running here: 502.
    assert status == (502 if allowed else 403)


def test_a_body_over_one_mebibyte_is_refused(nginx: Nginx) -> None:
    status, _ = nginx.request("POST", "/", body=bytes((1 << 20) + 1))

    assert status == 413


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("LoadModel", pb.LoadModelRequest(path="any")),
        ("UnloadModel", pb.UnloadModelRequest(model_name="any")),
    ],
)
def test_model_loading_is_refused_on_the_public_grpc_path(
    nginx: Nginx, method: str, request_: object
) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=nginx.certificate.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{nginx.https_port}", credentials) as channel:
        stub = lipsync_pb2_grpc.LipSyncStub(channel)
        call = getattr(stub, method)
        with pytest.raises(grpc.RpcError) as refused:
            call(request_, timeout=10)
        with pytest.raises(grpc.RpcError) as routed:
            stub.ListModels(pb.ListModelsRequest(), timeout=10)

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The other methods still go to the server (not running here).
    assert routed.value.code() == grpc.StatusCode.UNAVAILABLE
