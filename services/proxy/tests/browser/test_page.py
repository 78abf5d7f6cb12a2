"""The client page in headless Chromium against the real proxy and server (the demo avatar)."""

from __future__ import annotations

import json
import time

import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from lipsync_common.waiting import TIME_UNIT
from lipsync_protocol import v2
from lipsync_protocol.fields import Bounds, OutputMode

from ..processes import ProxyProcess
from .harness import ClientPage, Page, client_url, expect

pytestmark = pytest.mark.integration

#: A channel difference beyond this is a different picture, not JPEG noise.
NOISE = 40


def test_the_page_connects_and_lists_the_demo_model_without_console_errors(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page

    client.open(client_url(client_proxy))

    expect(page.locator("#connection-text")).to_have_text("Connected · lipsync.v2")
    expect(page.locator("#model-input")).to_have_value("demo")
    assert page.locator("#model-options option").evaluate_all("options => options.map(o => o.value)") == [
        "demo"
    ]
    frames = int(page.locator("#meta-frames").inner_text())
    assert frames >= 250
    expect(page.locator("#meta-fps")).to_have_text("25")
    expect(page.locator("#meta-size")).to_have_text("1280 × 720")
    expect(page.locator("#frame-slider")).to_have_attribute("max", str(frames - 1))
    expect(page.locator("#screen-empty")).to_be_hidden()
    expect(page.locator("#architecture")).to_have_attribute("data-state", "open")
    assert client.errors == []


def test_the_seeds_url_serves_the_same_client(client: ClientPage, client_proxy: ProxyProcess) -> None:
    client.open(client_url(client_proxy, "/grpc-lipsync-client.html"))

    expect(client.page.locator("#model-input")).to_have_value("demo")
    assert client.errors == []


def test_fifty_frames_play_at_25_fps_with_the_fps_and_latency_shown(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    expect(page.locator("#fps-output")).to_have_text("25 FPS")
    digests = {client.canvas_digest()}

    started = time.monotonic()
    page.click("#play-button")
    expect(page.locator("#play-label")).to_have_text("Stop")
    deadline = started + 10 * TIME_UNIT
    while client.number("m-frames") < 50 + 1:
        assert time.monotonic() < deadline, f"only {client.number('m-frames')} frames shown"
        digests.add(client.canvas_digest())
        page.wait_for_timeout(100)
    elapsed = time.monotonic() - started
    fps = client.number("m-fps")
    page.click("#play-button")

    # 50 frames at 25 FPS take 2 s: not much less (paced), not much more (pipelined).
    assert 1.8 <= elapsed <= 2.0 + 2 * TIME_UNIT
    assert 20 <= fps <= 27
    assert client.number("m-target") == 25
    assert len(digests) >= 5, "the picture did not change between frames"
    for tile in ("m-latency", "m-p50", "m-p95"):
        assert page.locator(f"#{tile}").inner_text().endswith("ms")
    assert client.number("m-p50") <= client.number("m-p95")
    assert client.number("m-errors") == 0
    assert "Playing demo from frame 0 at 25 FPS" in client.log_text()
    expect(page.locator("#play-label")).to_have_text("Play")
    assert client.errors == []


def test_the_slider_single_frame_and_arrow_keys_show_the_chosen_frame(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    first = client.canvas_digest()

    page.locator("#frame-slider").fill("120")
    expect(page.locator("#badge-frame")).to_have_text("frame 120")
    expect(page.locator("#frame-output")).to_contain_text("120 /")
    at_120 = client.canvas_digest()
    page.click("#single-button")
    expect(page.locator("#activity-log")).to_contain_text("Single frame 120")
    page.locator("#player").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#badge-frame")).to_have_text("frame 121")

    assert at_120 != first
    assert client.canvas_digest() != at_120
    assert client.errors == []


def test_space_plays_and_stops_from_the_keyboard(client: ClientPage, client_proxy: ProxyProcess) -> None:
    page = client.page
    client.open(client_url(client_proxy))

    page.locator("#player").focus()
    page.keyboard.press("Space")
    expect(page.locator("#play-label")).to_have_text("Stop")
    page.keyboard.press("Space")

    expect(page.locator("#play-label")).to_have_text("Play")
    assert client.errors == []


def test_face_crop_mode_draws_the_crop_at_its_bounds_over_the_base_frame(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    page.locator("#frame-slider").fill("40")
    expect(page.locator("#badge-frame")).to_have_text("frame 40")
    bounds, base = face_bounds_and_base_frame(client_proxy, "demo", 40)
    snapshot_face(page, "full", bounds)
    snapshot_decoded(page, "base", base, bounds)

    shown = page.locator("#m-frames").inner_text()
    page.click("label[for=mode-crop]")
    expect(page.locator("#badge-mode")).to_have_text("face crop")
    expect(page.locator("#m-frames")).not_to_have_text(shown)
    snapshot_face(page, "cropped", bounds)

    # The base frame with the crop drawn at its bounds is the full frame again, up to JPEG noise;
    # the base frame alone differs from it where the mouth was drawn.
    assert changed_share(page, "cropped", "full") < 0.005
    assert changed_share(page, "base", "full") > 0.02
    assert client.errors == []


def test_an_unknown_model_is_refused_with_the_servers_error_shown(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))

    page.locator("#model-input").fill("nobody")
    page.locator("#model-input").press("Enter")

    expect(page.locator("#error-banner")).to_be_visible()
    expect(page.locator("#error-code")).to_have_text("NOT_FOUND")
    expect(page.locator("#error-text")).to_contain_text("nobody")
    expect(page.locator("#error-text")).to_contain_text("demo")
    expect(page.locator("#play-button")).to_be_disabled()
    expect(page.locator("#m-errors")).to_have_text("1")
    page.click("#error-dismiss")
    expect(page.locator("#error-banner")).to_be_hidden()


def test_an_error_banner_goes_once_the_right_model_is_chosen_and_frames_arrive(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    expect(page.locator("#badge-frame")).to_have_text("frame 0")

    page.locator("#model-input").fill("nobody")
    page.locator("#model-input").press("Enter")
    expect(page.locator("#error-code")).to_have_text("NOT_FOUND")
    expect(page.locator("#error-banner")).to_be_visible()
    shown = page.locator("#m-frames").inner_text()

    page.locator("#model-input").fill("demo")
    page.locator("#model-input").press("Enter")
    expect(page.locator("#m-frames")).not_to_have_text(shown)
    expect(page.locator("#error-banner")).to_be_hidden()
    expect(page.locator("#m-errors")).to_have_text("1")


def test_the_page_fits_a_phone_screen(phone_client: ClientPage, client_proxy: ProxyProcess) -> None:
    page = phone_client.page
    phone_client.open(client_url(client_proxy))

    width = page.evaluate("() => document.documentElement.scrollWidth")
    canvas = page.locator("#frame-canvas").bounding_box()

    assert width <= 390
    assert canvas is not None
    assert canvas["width"] <= 390
    assert phone_client.errors == []


# --- helpers -------------------------------------------------------------------------------------


def face_bounds_and_base_frame(proxy: ProxyProcess, model: str, frame_id: int) -> tuple[Bounds, str]:
    """A frame's face box and its unmodified base frame (base64 JPEG), asked of the proxy directly."""
    with connect(proxy.ws_url, subprotocols=[Subprotocol(v2.SUBPROTOCOL)]) as ws:
        ws.send(v2.encode_client(v2.InferRequest(1, model, frame_id, OutputMode.FACE_CROP)))
        frame = ws.recv(timeout=5 * TIME_UNIT)
        ws.send(json.dumps({"type": "get_video_frame", "id": 2, "model_name": model, "frame_id": frame_id}))
        base = ws.recv(timeout=5 * TIME_UNIT)
    assert isinstance(frame, bytes), frame
    reply = v2.decode_server(frame)
    assert isinstance(reply, v2.FrameReply), reply
    image: str = json.loads(base)["image_base64"]
    return reply.bounds, image


def snapshot_face(page: Page, name: str, bounds: Bounds) -> None:
    """Keep the canvas's pixels inside `bounds` in the page, as `name`."""
    page.evaluate(
        """([name, [x1, y1, x2, y2]]) => {
            const canvas = document.getElementById('frame-canvas');
            window.faceSnapshots ??= {};
            window.faceSnapshots[name] = canvas.getContext('2d').getImageData(x1, y1, x2 - x1, y2 - y1).data;
        }""",
        [name, list(bounds)],
    )


def snapshot_decoded(page: Page, name: str, jpeg_base64: str, bounds: Bounds) -> None:
    """Decode a JPEG in the browser, as the page decodes frames, and keep its pixels inside
    `bounds` in the page, as `name`."""
    page.evaluate(
        """async ([name, jpeg, [x1, y1, x2, y2]]) => {
            const bytes = Uint8Array.from(atob(jpeg), (c) => c.charCodeAt(0));
            const image = await createImageBitmap(new Blob([bytes], { type: 'image/jpeg' }));
            const canvas = new OffscreenCanvas(image.width, image.height);
            const context = canvas.getContext('2d');
            context.drawImage(image, 0, 0);
            window.faceSnapshots ??= {};
            window.faceSnapshots[name] = context.getImageData(x1, y1, x2 - x1, y2 - y1).data;
        }""",
        [name, jpeg_base64, list(bounds)],
    )


def changed_share(page: Page, a: str, b: str) -> float:
    """The share of pixels of two snapshots where some colour channel differs by more than NOISE."""
    share: float = page.evaluate(
        """([a, b, noise]) => {
            const [x, y] = [window.faceSnapshots[a], window.faceSnapshots[b]];
            let changed = 0;
            for (let i = 0; i < x.length; i += 4) {
                const channels = [0, 1, 2].map((c) => Math.abs(x[i + c] - y[i + c]));
                if (Math.max(...channels) > noise) changed += 1;
            }
            return changed / (x.length / 4);
        }""",
        [a, b, NOISE],
    )
    return share
