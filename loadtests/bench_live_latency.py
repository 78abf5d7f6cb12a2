"""Live-microphone latency through the proxy, video output against JPEG face crops.

    python -m loadtests.bench_live_latency [--seconds 6] [--rounds 2]
                                           [--output artifacts/bench_live_latency.json]

Starts the real lipsync-server (demo avatar) and proxy on free loopback ports, then runs `Speak`
sessions over `lipsync.v2` as the page's microphone mode does: 40 ms of PCM16 audio sent every 40 ms
in real time, half a second of credits and one more per frame received. Each frame's latency runs from
sending the audio chunk that completes it to receiving the frame (its SESSION_FRAME, or its
VIDEO_CHUNK), so it holds the server's pacing, rendering, encoding and both hops, but not the
browser's decoding and drawing (a face crop's JPEG or H.264 chunk decodes in about a millisecond).
JPEG and video sessions alternate, `--rounds` of each, so a busy machine weighs on both alike; they
start once the server has made the demo's base video (it does so in the background after loading,
and a session running meanwhile would measure that work too), after one warm-up session of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from lipsync_protocol import v2
from lipsync_protocol.fields import OutputMode
from loadtests.processes import ProxyProcess, ServerProcess
from loadtests.procstat import load_average

FRAME_S = 0.04
SAMPLES_PER_FRAME = 640


async def session(url: str, video: bool, seconds: float) -> list[float]:
    """Latencies in ms of one live session's frames."""
    frames = round(seconds / FRAME_S)
    t = np.arange(frames * SAMPLES_PER_FRAME) / 16_000
    speech = (
        (np.sin(2 * np.pi * 220 * t) * np.abs(np.sin(2 * np.pi * 2 * t)) * 12_000).astype("<i2").tobytes()
    )
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    codecs = (v2.VideoCodec.H264,) if video else ()
    async with connect(url, subprotocols=[Subprotocol(v2.SUBPROTOCOL)], max_size=None) as ws:
        start = v2.SessionStart(1, "demo", 0, OutputMode.FACE_CROP, 0, 13, None, codecs)
        await ws.send(v2.encode_client(start))

        async def send_audio() -> None:
            begin = time.monotonic()
            for index in range(frames):
                await asyncio.sleep(max(0.0, begin + index * FRAME_S - time.monotonic()))
                chunk = speech[index * 2 * SAMPLES_PER_FRAME : (index + 1) * 2 * SAMPLES_PER_FRAME]
                await ws.send(v2.encode_client(v2.SessionAudio(1, chunk)))
                sent_at[index] = time.monotonic()
            await ws.send(v2.encode_client(v2.SessionControl(1, v2.SessionAction.END)))

        sender = asyncio.create_task(send_audio())
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes)
            message = v2.decode_server(data)
            if isinstance(message, v2.SessionEnd):
                break
            if isinstance(message, v2.SessionFrame | v2.VideoChunk):
                index = round(message.audio_time_ms / (FRAME_S * 1000))
                if index in sent_at:
                    latencies.append((time.monotonic() - sent_at[index]) * 1000)
                await ws.send(v2.encode_client(v2.Credit(1, 1)))
        await sender
    return latencies


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "frames": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def run(url: str, seconds: float, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"jpeg_face_crop": [], "video_h264": []}
    await session(url, False, 1.0)
    await session(url, True, 1.0)
    for _ in range(rounds):
        results["jpeg_face_crop"] += await session(url, False, seconds)
        results["video_h264"] += await session(url, True, seconds)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="audio per session")
    parser.add_argument("--rounds", type=int, default=2, help="sessions of each kind, alternated")
    parser.add_argument("--output", type=Path, default=Path("artifacts/bench_live_latency.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        server = ServerProcess(root, cache_dir=root / "cache")
        server.start()
        try:
            proxy = ProxyProcess(root, grpc_addr=server.address)
            proxy.start()
            try:
                # Waits for the server's background encoding of the base video (and follows the redirect).
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{proxy.port}/models/demo/base-video?codec=h264", timeout=120
                ):
                    pass
                latencies = asyncio.run(run(proxy.ws_url, args.seconds, args.rounds))
            finally:
                proxy.stop()
        finally:
            server.stop()
    result = {name: summary(values) for name, values in latencies.items()}
    result["load_average"] = [round(value, 2) for value in load_average()]  # type: ignore[assignment]
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
