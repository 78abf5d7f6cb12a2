"""The proxy's view of backend health follows the backend's grpc.health.v1 status, with no restart."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT, wait_until

from .processes import DoubleProcess, ProxyProcess, http_get

pytestmark = pytest.mark.integration


def test_health_is_503_while_the_backend_is_down_and_200_again_after_it_restarts(logs_dir: Path) -> None:
    backend_port = free_port()
    proxy = ProxyProcess(logs_dir, grpc_addr=f"127.0.0.1:{backend_port}").start()
    backend: DoubleProcess | None = None
    try:
        proxy.wait_ready(20 * TIME_UNIT)
        wait_until(
            lambda: proxy.health().json()["backends"][0]["status"] == "NOT_SERVING",  # type: ignore[index]
            10 * TIME_UNIT,
            "the unreachable backend NOT_SERVING",
        )
        down = proxy.health()
        assert down.status == 503
        assert down.json() == {
            "status": "NOT_SERVING",
            "healthy": False,
            "loaded_models": 0,
            "uptime": down.json()["uptime"],  # type: ignore[index]
            "backends": [
                {
                    "name": proxy.grpc_addr,
                    "target": proxy.grpc_addr,
                    "status": "NOT_SERVING",
                    "address": proxy.grpc_addr,
                    "healthy": False,
                    "total_requests": 0,
                    "error_count": 0,
                }
            ],
            "healthy_count": 0,
            "total_backends": 1,
            "total_requests": 0,
            "error_count": 0,
        }
        assert http_get(proxy.port, "/readyz").status == 503

        backend = DoubleProcess(logs_dir, port=backend_port).start()
        wait_until(lambda: proxy.health().status == 200, 10 * TIME_UNIT, "/health 200 once the backend is up")
        wait_until(lambda: proxy.health().json()["loaded_models"] == 1, 5 * TIME_UNIT, "the model count")  # type: ignore[index]

        backend.stop(signal.SIGKILL)
        wait_until(lambda: proxy.health().status == 503, 10 * TIME_UNIT, "/health 503 once the backend died")
        assert proxy.health().json()["backends"][0]["status"] == "NOT_SERVING"  # type: ignore[index]
        assert proxy.health().json()["loaded_models"] == 0  # type: ignore[index]

        backend = DoubleProcess(logs_dir, port=backend_port).start()
        wait_until(lambda: proxy.health().status == 200, 10 * TIME_UNIT, "/health 200 after the restart")
        assert proxy.running
    finally:
        if backend is not None:
            backend.stop()
        proxy.stop()
