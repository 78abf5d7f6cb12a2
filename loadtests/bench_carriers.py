"""The proxy's HTTP/2 decision, measured: its own client (`lipsync_proxy.http2`), the `h2` library and
grpc.aio carrying the same `InferBatch` calls to the benchmark backend, in one alternated run.

    python -m loadtests.bench_carriers [--rounds 4] [--duration 3] [--batch 8] [--calls 8]

Each carrier keeps `--calls` calls of `--batch` frames in flight on one connection for `--duration`
seconds under uvloop, as the proxy does; the carriers take turns, `--rounds` times. CPU is this
process's user + system time (every thread: grpc-core's too) over the window, per frame. The `h2`
client is the smallest that carries a unary call: headers, one prefixed message, the reply's DATA
joined, trailers read.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import uvloop

from lipsync_proxy.http2 import CallError, Http2Connection, Outcome
from lipsync_proxy.wire import INFER_BATCH_METHOD, encode_batch, encode_infer_request, split_batch
from loadtests.processes import BackendProcess

Call = Callable[[bytes], Awaitable[bytes | bytearray]]


class H2Client(asyncio.Protocol):
    """Unary gRPC calls over the `h2` library's connection state machine."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.transport: asyncio.Transport | None = None
        self.replies: dict[int, tuple[bytearray, asyncio.Future[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window((1 << 31) - 1 - 65_535)
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())

    def call(self, method: str, message: bytes) -> asyncio.Future[bytes]:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.h2.send_headers(stream_id, headers)
        self.h2.send_data(stream_id, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        self.flush()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.replies[stream_id] = (bytearray(), future)
        return future

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.replies[event.stream_id][0].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                body, future = self.replies.pop(event.stream_id)
                future.set_result(bytes(body[5:]))
        self.flush()


async def own_carrier(host: str, port: int) -> tuple[Call, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(lambda: Http2Connection(f"{host}:{port}"), host, port)

    async def call(request: bytes) -> bytearray:
        reply: asyncio.Future[Outcome] = loop.create_future()
        if connection.call(INFER_BATCH_METHOD, (), 30.0, request, reply.set_result) is None:
            raise RuntimeError("the connection took no call")
        outcome = await reply
        if isinstance(outcome, CallError):
            raise outcome
        return outcome

    return call, connection.close


async def h2_carrier(host: str, port: int) -> tuple[Call, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: H2Client(f"{host}:{port}"), host, port)

    async def call(request: bytes) -> bytes:
        return await client.call(INFER_BATCH_METHOD, request)

    return call, transport.close


async def grpc_carrier(host: str, port: int) -> tuple[Call, Callable[[], None]]:
    channel = grpc.aio.insecure_channel(
        f"{host}:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER_BATCH_METHOD)

    async def call(request: bytes) -> bytes:
        reply: bytes = await method(request, timeout=30.0)
        return reply

    def close() -> None:
        closing.add(asyncio.ensure_future(channel.close()))

    return call, close


#: Channels being closed (a task must be kept until it is done).
closing: set[asyncio.Future[None]] = set()


CARRIERS = {"own HTTP/2 client": own_carrier, "h2 library": h2_carrier, "grpc.aio": grpc_carrier}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, port: int, batch: int, calls: int, duration_s: float) -> dict[str, Any]:
    call, close = await CARRIERS[name]("127.0.0.1", port)
    request = encode_batch([encode_infer_request(b"demo", i) for i in range(batch)])
    for _ in range(20):
        assert len(split_batch(await call(request))) == batch
    frames = 0
    stop = time.monotonic() + duration_s

    async def caller() -> None:
        nonlocal frames
        while time.monotonic() < stop:
            items = split_batch(await call(request))
            # As the proxy does: each frame a bytes of its own.
            frames += len([bytes(item) for item in items])

    started, cpu = time.monotonic(), cpu_s()
    await asyncio.gather(*(caller() for _ in range(calls)))
    wall, used = time.monotonic() - started, cpu_s() - cpu
    close()
    return {"carrier": name, "frames_per_s": frames / wall, "cpu_us_per_frame": used / frames * 1e6}


async def run(rounds: int, duration_s: float, batch: int, calls: int, work_dir: Path) -> None:
    with BackendProcess(work_dir, delay_ms=0.0) as backend:
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in CARRIERS}
        for _ in range(rounds):
            for name in CARRIERS:
                results[name].append(await measure(name, backend.port, batch, calls, duration_s))
    print(f"| carrier | frames/s (median of {rounds}) | client CPU µs per frame (median; each run) |")
    print("|---|---:|---|")
    for name, runs in results.items():
        cpu = [r["cpu_us_per_frame"] for r in runs]
        fps = statistics.median(r["frames_per_s"] for r in runs)
        print(
            f"| {name} | {fps:,.0f} | {statistics.median(cpu):.1f} ({', '.join(f'{c:.1f}' for c in cpu)}) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--work-dir", type=Path, default=Path("artifacts/carriers"))
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    uvloop.run(run(args.rounds, args.duration, args.batch, args.calls, args.work_dir))


if __name__ == "__main__":
    main()
