"""HTTP on the proxy's port: health, readiness, metrics, static files and the origin check."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from lipsync_common.waiting import eventually

from .processes import ProxyProcess, http_get, v1_request

pytestmark = pytest.mark.integration


def test_health_reports_the_backends_live_status(proxy: ProxyProcess) -> None:
    reply = http_get(proxy.port, "/health")
    body = reply.json()
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert isinstance(body, dict)
    assert body["status"] == "SERVING"
    assert body["healthy"] is True
    assert body["loaded_models"] == 1
    assert isinstance(body["uptime"], float)
    assert body["uptime"] > 0
    (backend,) = body["backends"]
    assert {key: backend[key] for key in ("name", "target", "status")} == {
        "name": proxy.grpc_addr,
        "target": proxy.grpc_addr,
        "status": "SERVING",
    }


def test_liveness_and_readiness_answer(proxy: ProxyProcess) -> None:
    assert http_get(proxy.port, "/healthz").status == 200
    ready = http_get(proxy.port, "/readyz")
    assert ready.status == 200
    assert ready.json() == {"ready": True}


async def test_metrics_count_connections_requests_and_latency(proxy: ProxyProcess) -> None:
    async with connect(proxy.ws_url) as ws:
        await ws.send(v1_request("demo", 1))
        await ws.recv()
        await ws.send(v1_request("nobody", 1))
        await ws.recv()

        async def scrape() -> str:
            return (await asyncio.to_thread(http_get, proxy.port, "/metrics")).body.decode()

        async def failure_counted() -> bool:
            return 'lipsync_proxy_requests_total{code="NOT_FOUND",type="v1_frame"}' in await scrape()

        # A request may be counted just after its reply went out: wait for the last one.
        await eventually(failure_counted, "the failed request counted")
        metrics = await scrape()
    assert 'lipsync_proxy_open_connections{protocol="v1"} 1.0' in metrics
    assert 'lipsync_proxy_connections_total{protocol="v1"}' in metrics
    assert 'lipsync_proxy_requests_total{code="OK",type="v1_frame"}' in metrics
    assert 'lipsync_proxy_requests_total{code="NOT_FOUND",type="v1_frame"}' in metrics
    assert 'lipsync_proxy_request_duration_seconds_bucket{le="0.005",type="v1_frame"}' in metrics
    assert 'lipsync_proxy_grpc_duration_seconds_count{method="Infer"}' in metrics
    assert "lipsync_proxy_inflight_requests 0.0" in metrics
    assert 'lipsync_proxy_backend_serving{backend="' in metrics


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/", "text/html; charset=utf-8", b"<!doctype html>"),
        ("/index.html", "text/html; charset=utf-8", b"<!doctype html>"),
        ("/grpc-lipsync-client.html", "text/html; charset=utf-8", b"<!doctype html>"),
        ("/app.js?v=2", "text/javascript; charset=utf-8", b"console.log"),
        ("/assets/logo.svg", "image/svg+xml", b"<svg"),
    ],
)
def test_static_files_are_served_with_their_content_type(
    proxy: ProxyProcess, path: str, content_type: str, start: bytes
) -> None:
    reply = http_get(proxy.port, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    assert reply.body.startswith(start)


@pytest.mark.parametrize(
    "path",
    [
        "/missing.html",
        "/assets",
        "/assets/",
        "/.env",
        "/escape.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5c..%5cetc%5cpasswd",
    ],
)
def test_no_listing_no_dotfiles_and_no_way_out_of_the_static_directory(
    proxy: ProxyProcess, path: str
) -> None:
    reply = http_get(proxy.port, path)
    assert reply.status == 404
    assert b"secret" not in reply.body
    assert b"root:" not in reply.body


async def test_a_page_from_a_foreign_origin_is_refused_with_403(proxy: ProxyProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(proxy.ws_url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["http://localhost:8080", "https://127.0.0.1", None])
async def test_localhost_pages_and_non_browser_clients_may_connect(
    proxy: ProxyProcess, origin: str | None
) -> None:
    async with connect(proxy.ws_url, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send('{"type":"ping"}')
        assert await ws.recv() == '{"type":"pong"}'
