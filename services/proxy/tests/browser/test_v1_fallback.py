"""The seed's v1 protocol from the browser: the page playing over it, and a plain snippet sending
the seed's request format getting JPEGs back through the proxy."""

from __future__ import annotations

import pytest

from ..processes import ProxyProcess
from .harness import ClientPage, client_url, expect

pytestmark = pytest.mark.integration


def test_the_page_plays_frames_over_the_seeds_v1_protocol(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))

    page.select_option("#protocol-select", "v1")
    expect(page.locator("#connection-text")).to_have_text("Connected · v1 (seed format)")
    client.wait_ready()
    first = client.canvas_digest()
    page.click("#play-button")
    client.wait_for_number("m-frames", 25)
    page.click("#play-button")

    assert client.canvas_digest() != first
    expect(page.locator("#mic-button")).to_be_disabled()
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_face_crops_over_v1_come_as_json_with_their_bounds(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    client.open(client_url(client_proxy))
    page.select_option("#protocol-select", "v1")
    client.wait_ready()
    expect(page.locator("#m-frames")).not_to_have_text("0")
    shown = page.locator("#m-frames").inner_text()

    page.click("label[for=mode-crop]")

    expect(page.locator("#m-frames")).not_to_have_text(shown)
    expect(page.locator("#m-server")).to_contain_text("ms")
    assert client.number("m-errors") == 0
    assert client.errors == []


def test_a_snippet_sending_the_seeds_request_gets_jpegs_back_in_order(
    client: ClientPage, client_proxy: ProxyProcess
) -> None:
    page = client.page
    page.goto(client_url(client_proxy))

    replies = page.evaluate(
        """async () => {
            const { encodeV1Request } = await import('/js/protocol.js');
            const ws = new WebSocket(`ws://${location.host}/ws`);  // no subprotocol: v1
            ws.binaryType = 'arraybuffer';
            await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
            const replies = [];
            const done = new Promise((resolve) => {
                ws.onmessage = (event) => {
                    const data = event.data;
                    replies.push(typeof data === 'string' ? JSON.parse(data)
                        : { size: data.byteLength, head: Array.from(new Uint8Array(data, 0, 2)),
                            tail: Array.from(new Uint8Array(data, data.byteLength - 2)) });
                    if (replies.length === 4) resolve();
                };
            });
            for (const frame of [5, 6, 7]) ws.send(encodeV1Request('demo', frame));
            ws.send(encodeV1Request('nobody', 5));
            await done;
            ws.close();
            return { protocol: ws.protocol, replies };
        }"""
    )

    assert replies["protocol"] == ""
    jpegs, error = replies["replies"][:3], replies["replies"][3]
    for jpeg in jpegs:
        assert jpeg["head"] == [0xFF, 0xD8]
        assert jpeg["tail"] == [0xFF, 0xD9]
        assert jpeg["size"] > 10_000
    assert error["type"] == "error"
    assert error["code"] == "NOT_FOUND"
    assert error["model_name"] == "nobody"
    assert error["frame_id"] == 5
