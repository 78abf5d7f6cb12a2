"""The page's logic modules, run in Chromium with stand-ins for time and sockets: the player's
pipelining and pacing, the connection's protocol fallback and backoff, the statistics, the audio
conversion. (The protocol module has its own file.)"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import Page

pytestmark = pytest.mark.integration

# A player driven by a fake clock: `run(script)` evaluates `script` with `harness` in scope.
PLAYER_HARNESS = """
const { Player } = await import('/js/player.js');
const harness = {
    time: 0, timers: [], requests: [], shown: [], released: [],
    make(options = {}) {
        const player = new Player({
            fetchFrame: (frameId) => new Promise((resolve, reject) => {
                harness.requests.push({ frameId, resolve, reject });
            }),
            present: (frame, frameId) => harness.shown.push(frameId),
            release: (frame) => harness.released.push(frame),
            now: () => harness.time,
            setTimer: (callback, ms) => {
                const timer = { at: harness.time + ms, callback };
                harness.timers.push(timer);
                return timer;
            },
            clearTimer: (t) => { harness.timers = harness.timers.filter((x) => x !== t); },
            ...options,
        });
        return player;
    },
    // Move the clock on, firing timers as they come due.
    advance(ms) {
        const end = harness.time + ms;
        for (;;) {
            harness.timers.sort((a, b) => a.at - b.at);
            const next = harness.timers[0];
            if (next === undefined || next.at > end) break;
            harness.timers.shift();
            harness.time = Math.max(harness.time, next.at);
            next.callback();
        }
        harness.time = end;
    },
    // Answer the request for `frameId` and let the player's promise callbacks run.
    async answer(frameId) {
        const request = harness.requests.find((r) => r.frameId === frameId && !r.done);
        request.done = true;
        request.resolve({ frame: frameId });
        await Promise.resolve(); await Promise.resolve();
    },
    inFlight() { return harness.requests.filter((r) => !r.done).map((r) => r.frameId); },
};
"""


def run_player(page: Page, script: str) -> Any:
    return page.evaluate(f"async () => {{ {PLAYER_HARNESS} {script} }}")


def test_the_player_keeps_a_window_of_requests_in_flight(modules_page: Page) -> None:
    result = run_player(
        modules_page,
        """
        const player = harness.make({ lookahead: 8 });
        player.start({ fromFrame: 10, frameCount: 300, fps: 25, loop: false });
        const first = harness.inFlight();
        await harness.answer(10);
        return { first, after: harness.inFlight(), shown: harness.shown };
        """,
    )

    assert result["first"] == list(range(10, 18))
    # The first frame starts the clock and is shown at once; one more request takes its place.
    assert result["shown"] == [10]
    assert result["after"] == list(range(11, 19))


def test_the_player_shows_frames_in_order_at_the_chosen_fps_whatever_order_they_arrive_in(
    modules_page: Page,
) -> None:
    result = run_player(
        modules_page,
        """
        const player = harness.make({ lookahead: 4 });
        player.start({ fromFrame: 0, frameCount: 300, fps: 25, loop: false });
        await harness.answer(0);
        for (const id of [3, 2, 1]) await harness.answer(id);
        const early = [...harness.shown];
        const timeline = [];
        for (let i = 0; i < 3; i += 1) {
            harness.advance(40);
            timeline.push([harness.time, [...harness.shown]]);
        }
        return { early, timeline, counters: player.counters };
        """,
    )

    assert result["early"] == [0]
    assert result["timeline"] == [[40, [0, 1]], [80, [0, 1, 2]], [120, [0, 1, 2, 3]]]
    assert result["counters"]["late"] == 0


def test_a_late_frame_is_counted_and_dropped_once_the_next_one_is_due_and_here(modules_page: Page) -> None:
    result = run_player(
        modules_page,
        """
        const player = harness.make({ lookahead: 4 });
        player.start({ fromFrame: 0, frameCount: 300, fps: 25, loop: false });
        await harness.answer(0);
        harness.advance(50);                // frame 1 was due at 40 ms and is not here
        const waiting = [...harness.shown];
        await harness.answer(2);
        harness.advance(40);                // frame 2 is due at 80 ms and here: frame 1 is given up
        const afterSkip = [...harness.shown];
        await harness.answer(1);            // frame 1 arrives after all and is not shown
        const { shown, released } = harness;
        return { waiting, afterSkip, shown, released, counters: player.counters };
        """,
    )

    assert result["waiting"] == [0]
    assert result["afterSkip"] == [0, 2]
    assert result["shown"] == [0, 2]
    assert result["counters"]["late"] == 1
    assert result["counters"]["dropped"] == 1
    assert result["released"] == [{"frame": 1}]


def test_without_loop_the_player_stops_after_the_last_frame_and_with_loop_it_wraps(
    modules_page: Page,
) -> None:
    result = run_player(
        modules_page,
        """
        const ends = [];
        const once = harness.make({ lookahead: 8 });
        once.addEventListener('stop', (event) => ends.push(event.detail.reason));
        once.start({ fromFrame: 297, frameCount: 300, fps: 25, loop: false });
        const requestedOnce = harness.inFlight();
        for (const id of [297, 298, 299]) await harness.answer(id);
        harness.advance(200);
        const shownOnce = [...harness.shown];
        harness.shown.length = 0;
        harness.requests.length = 0;
        const looping = harness.make({ lookahead: 4 });
        looping.start({ fromFrame: 298, frameCount: 300, fps: 25, loop: true });
        return { requestedOnce, shownOnce, ends, playing: once.playing, wrapped: harness.inFlight() };
        """,
    )

    assert result["requestedOnce"] == [297, 298, 299]
    assert result["shownOnce"] == [297, 298, 299]
    assert result["ends"] == ["ended"]
    assert result["playing"] is False
    assert result["wrapped"] == [298, 299, 0, 1]


def test_a_permanent_error_stops_the_player_and_a_passing_one_does_not(modules_page: Page) -> None:
    result = run_player(
        modules_page,
        """
        const reasons = [];
        const player = harness.make({ lookahead: 2 });
        player.addEventListener('stop', (event) => reasons.push(event.detail.reason));
        player.start({ fromFrame: 0, frameCount: 300, fps: 25, loop: true });
        harness.requests[0].done = true;
        harness.requests[0].reject(Object.assign(new Error('busy'), { permanent: false }));
        await Promise.resolve(); await Promise.resolve();
        const afterPassing = player.playing;
        harness.requests[1].done = true;
        harness.requests[1].reject(Object.assign(new Error('no such model'), { permanent: true }));
        await Promise.resolve(); await Promise.resolve();
        return { afterPassing, playing: player.playing, reasons, errors: player.counters.errors };
        """,
    )

    assert result == {"afterPassing": True, "playing": False, "reasons": ["error"], "errors": 2}


# A fake WebSocket: offered subprotocols decide whether it "opens".
FAKE_SOCKETS = """
const { Connection, State, defaultSocketUrl, backoffDelay } = await import('/js/connection.js');
const opened = [];
class FakeSocket {
    constructor(url, protocols, acceptsV2) {
        Object.assign(this, { url, protocols, protocol: '' });
        opened.push(protocols);
        setTimeout(() => {
            if (protocols.length > 0 && !acceptsV2) { this.onclose({ code: 1006, reason: '' }); return; }
            this.protocol = protocols.length > 0 ? 'lipsync.v2' : '';
            this.onopen();
        }, 0);
    }
    send() {}
    close() {}
}
"""


def test_auto_mode_falls_back_to_v1_when_the_proxy_does_not_speak_v2(modules_page: Page) -> None:
    result = modules_page.evaluate(
        f"""async () => {{ {FAKE_SOCKETS}
            const results = {{}};
            for (const acceptsV2 of [true, false]) {{
                opened.length = 0;
                const createSocket = (url, protocols) => new FakeSocket(url, protocols, acceptsV2);
                const connection = new Connection({{ createSocket }});
                const open = new Promise((resolve) => {{
                    connection.addEventListener('open', (event) => resolve(event.detail.protocol));
                }});
                connection.connect('ws://example.invalid/ws');
                const protocol = await open;
                const name = acceptsV2 ? 'v2 proxy' : 'v1 proxy';
                results[name] = {{ protocol, offered: [...opened], state: connection.state }};
                connection.disconnect();
            }}
            return results;
        }}"""
    )

    assert result["v2 proxy"] == {"protocol": "v2", "offered": [["lipsync.v2"]], "state": "open"}
    assert result["v1 proxy"] == {"protocol": "v1", "offered": [["lipsync.v2"], []], "state": "open"}


def test_reconnect_delays_grow_from_half_a_second_to_fifteen_with_jitter(modules_page: Page) -> None:
    delays = modules_page.evaluate(
        f"""async () => {{ {FAKE_SOCKETS}
            const least = () => 0;
            const most = () => 0.999999;
            return [1, 2, 3, 4, 5, 6, 7, 10].map((n) => [backoffDelay(n, least), backoffDelay(n, most)]);
        }}"""
    )

    ceilings = [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
    for (low, high), ceiling in zip(delays, ceilings, strict=True):
        assert low == ceiling / 2
        assert ceiling / 2 < high <= ceiling


def test_the_websocket_url_follows_the_page_and_uses_wss_behind_tls(modules_page: Page) -> None:
    urls = modules_page.evaluate(
        f"""async () => {{ {FAKE_SOCKETS}
            return [
                defaultSocketUrl({{ protocol: 'http:', host: 'localhost:8086' }}),
                defaultSocketUrl({{ protocol: 'https:', host: 'lipsync.example:8443' }}),
            ];
        }}"""
    )

    assert urls == ["ws://localhost:8086/ws", "wss://lipsync.example:8443/ws"]


def test_latency_percentiles_are_nearest_rank_over_the_window(modules_page: Page) -> None:
    result = modules_page.evaluate(
        """async () => {
            const { LatencyWindow, formatBytes, formatMs } = await import('/js/stats.js');
            const window = new LatencyWindow(100);
            for (let ms = 1; ms <= 120; ms += 1) window.add(ms);  // keeps 21 ... 120
            return {
                last: window.last, p50: window.percentile(50), p95: window.percentile(95),
                p100: window.percentile(100), empty: new LatencyWindow().percentile(50),
                bytes: [formatBytes(999), formatBytes(12_400), formatBytes(3_210_000)],
                ms: [formatMs(null), formatMs(7.25), formatMs(123.4)],
            };
        }"""
    )

    assert result == {
        "last": 120,
        "p50": 70,
        "p95": 115,
        "p100": 120,
        "empty": None,
        "bytes": ["999 B", "12.4 KB", "3.21 MB"],
        "ms": ["—", "7.3 ms", "123 ms"],
    }


def test_microphone_audio_becomes_pcm16_at_16_khz_without_seams(modules_page: Page) -> None:
    result = modules_page.evaluate(
        """async () => {
            const { Resampler, floatToPcm16 } = await import('/js/pcm.js');
            const tone = (rate, count, start) => Float32Array.from({ length: count },
                (_, i) => 0.5 * Math.sin(2 * Math.PI * 440 * (start + i) / rate));
            const down = new Resampler(48000, 16000);
            let out = [];
            // One second at 48 kHz in blocks of 960 (20 ms): exactly one second at 16 kHz.
            for (let block = 0; block < 50; block += 1) out.push(...down.push(tone(48000, 960, block * 960)));
            // Output sample i averages input samples 3i ... 3i + 2: the tone at 3i + 1.
            const expected = out.map((_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * (3 * i + 1)) / 48000));
            const error = Math.max(...out.map((v, i) => Math.abs(v - expected[i])));
            const up = new Resampler(8000, 16000);
            const upCount = up.push(tone(8000, 400, 0)).length + up.push(tone(8000, 400, 400)).length;
            return {
                count: out.length, error, upCount,
                pcm: Array.from(floatToPcm16(Float32Array.from([0, 0.5, -0.5, 1, -1, 2, -2]))),
            };
        }"""
    )

    assert result["count"] == 16000
    assert result["error"] < 0.02
    assert 1598 <= result["upCount"] <= 1600
    assert result["pcm"] == [0, 16384, -16384, 32767, -32768, 32767, -32768]


def test_base_frames_are_fetched_once_and_the_least_recently_used_go_beyond_the_budget(
    modules_page: Page,
) -> None:
    result = modules_page.evaluate(
        """async () => {
            const { BaseFrameCache } = await import('/js/render.js');
            const loads = [];
            const cache = new BaseFrameCache(async (frameId) => {
                loads.push(frameId);
                return new Uint8Array(400);
            }, 1000);
            await Promise.all([cache.get(1), cache.get(1), cache.get(2)]);
            await cache.get(1);          // 1 is now the most recently used
            await cache.get(3);          // 1200 bytes > 1000: 2 goes
            await cache.get(1);
            await cache.get(2);
            return { loads, bytes: cache.bytes };
        }"""
    )

    assert result == {"loads": [1, 2, 3, 2], "bytes": 800}


def test_the_latency_charts_scale_is_a_round_number_above_the_highest_value(modules_page: Page) -> None:
    ceilings = modules_page.evaluate(
        """async () => {
            const { niceCeiling } = await import('/js/chart.js');
            return [3, 10, 11, 20, 21, 49, 51, 100, 101, 640, 1800].map(niceCeiling);
        }"""
    )

    assert ceilings == [10, 10, 20, 20, 50, 50, 100, 100, 200, 1000, 2000]
