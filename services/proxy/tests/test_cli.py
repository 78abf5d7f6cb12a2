"""The `lipsync-proxy` process: startup failures, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT, eventually

from .doubles import double_stats, frame_id_of
from .processes import BIN, DoubleProcess, ProxyProcess, v1_request

pytestmark = pytest.mark.integration


def run_proxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lipsync-proxy"), *args], capture_output=True, text=True, timeout=20 * TIME_UNIT
    )


def test_a_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_proxy("--host", "127.0.0.1", "-ws-port", str(port))
    assert result.returncode == 2
    assert result.stderr == f"lipsync-proxy: cannot listen on 127.0.0.1:{port}: address already in use\n"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("localhost", "expected host:port"),
        ("127.0.0.1:0", "the port must be 1..65535"),
        ("a:1,,b:2", "an empty entry"),
        ("bad host:50051", "is not a host name or IP address"),
    ],
)
def test_a_bad_backend_address_exits_2_with_one_line(address: str, problem: str) -> None:
    result = run_proxy("-grpc-addr", address)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("lipsync-proxy: invalid settings: ")
    assert problem in result.stderr


def test_an_unresolvable_backend_host_exits_2_with_one_line() -> None:
    result = run_proxy(
        "--host", "127.0.0.1", "-ws-port", str(free_port()), "-grpc-addr", "a.invalid:1,b.invalid:2"
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("lipsync-proxy: cannot resolve backend host 'a.invalid'")


def test_every_invalid_setting_is_reported_at_once() -> None:
    result = run_proxy("--max-inflight", "0", "--timeout", "-1", "--log-format", "xml")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    for problem in ("--max-inflight 0", "--timeout -1.0", "--log-format 'xml'"):
        assert problem in result.stderr


async def frames_started(double: DoubleProcess, at_least: int) -> bool:
    return (await double_stats(double.address))["calls"].get("frame", 0) >= at_least


async def test_sigterm_drains_in_flight_requests_closes_with_1001_and_exits_0(
    double: DoubleProcess, logs_dir: Path
) -> None:
    proxy = ProxyProcess(logs_dir, grpc_addr=double.address, args=["--grace-period", str(5 * TIME_UNIT)])
    await asyncio.to_thread(proxy.start().wait_ready, 20 * TIME_UNIT)
    started = (await double_stats(double.address))["calls"].get("frame", 0)
    try:
        frames = [200, 210, 220, 230]
        async with connect(proxy.ws_url) as ws:
            for frame_id in frames:
                await ws.send(v1_request("demo", frame_id))
            await eventually(lambda: frames_started(double, started + len(frames)), "the frames started")
            assert proxy.process is not None
            proxy.process.send_signal(signal.SIGTERM)
            replies = [await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT) for _ in frames]
            with pytest.raises(ConnectionClosedOK) as closed:
                await asyncio.wait_for(ws.recv(), 5 * TIME_UNIT)
        exit_code = await asyncio.to_thread(proxy.process.wait, 10 * TIME_UNIT)
    finally:
        proxy.stop(signal.SIGKILL)
    assert [frame_id_of(reply) for reply in replies] == frames  # type: ignore[arg-type]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert exit_code == 0
