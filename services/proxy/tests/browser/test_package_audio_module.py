"""static/js/package-audio.js's sync rule, in Chromium, on an audio element whose clock the test runs.

The end-to-end test (test_audio.py) plays real audio, whose clock a busy machine can starve; here the
element's position moves only as the test says, so what the page does about a drift is exact: audio
that plays along is never moved, a small drift is closed by the playback rate, a large one by one seek.
"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import Page

pytestmark = pytest.mark.integration

#: The simulated playback, run in the page: frames from `first` at 25 fps for `seconds`, the element's
#: clock advancing `speed` times as fast as it should (0: an audio device that does not play), with
#: `stalls` frame numbers at which the element stands still for one frame.
PLAY = """async ({ first, seconds, speed, stalls, startAt }) => {
    const { PackageAudio } = await import('/js/package-audio.js');
    class Element extends EventTarget {
        constructor() {
            super();
            this.position = startAt;
            this.duration = 60;
            this.paused = true;
            this.seeking = false;
            this.playbackRate = 1;
            this.seeks = 0;
        }
        get currentTime() { return this.position; }
        set currentTime(value) {
            this.seeks += 1;
            this.position = value;
            this.dispatchEvent(new Event('seeked'));
        }
        set src(value) {}
        removeAttribute() {}
        load() {}
        play() { this.paused = false; return Promise.resolve(); }
        pause() { this.paused = true; }
    }
    const element = new Element();
    const audio = new PackageAudio(element);
    audio.load(new Uint8Array(44));
    const frames = Math.round(seconds * 25);
    const drifts = [];
    for (let index = 0; index < frames; index += 1) {
        audio.follow(first + index, 25, 25);
        drifts.push(element.position - (first + index) / 25);
        if (!element.paused && !stalls.includes(index)) element.position += speed * element.playbackRate / 25;
    }
    return { seeks: element.seeks, drifts, rate: element.playbackRate };
}"""


def play(page: Page, **options: Any) -> dict[str, Any]:
    arguments = {"first": 100, "seconds": 4.0, "speed": 1.0, "stalls": [], "startAt": 4.0} | options
    result: dict[str, Any] = page.evaluate(PLAY, arguments)
    return result


def test_audio_that_plays_along_is_never_moved(modules_page: Page) -> None:
    result = play(modules_page)
    assert result["seeks"] == 0
    assert max(abs(drift) for drift in result["drifts"]) < 1e-9


def test_audio_far_from_the_frame_is_moved_there_once_and_then_plays_along(modules_page: Page) -> None:
    result = play(modules_page, startAt=0.0)
    assert result["seeks"] == 1
    assert max(abs(drift) for drift in result["drifts"][1:]) < 0.01


def test_audio_that_fell_a_little_behind_catches_up_by_playing_faster_without_a_seek(
    modules_page: Page,
) -> None:
    # Two frames standing still: 80 ms behind, under the drift that makes the page seek.
    result = play(modules_page, stalls=[10, 11])
    drifts = result["drifts"]
    assert result["seeks"] == 0
    assert drifts[12] == pytest.approx(-0.08, abs=1e-6)
    assert abs(drifts[-1]) < 0.02, "the faster rate closes the gap within the 4 s"


def test_audio_that_does_not_play_is_moved_every_few_frames(modules_page: Page) -> None:
    # What the end-to-end test sees when a busy machine starves the browser's audio: the page keeps it
    # with the frames by seeking, about every fourth frame (0.12 s of drift at 25 fps).
    result = play(modules_page, speed=0.0, seconds=1.4)
    assert 8 <= result["seeks"] <= 12
    assert max(abs(drift) for drift in result["drifts"]) < 0.125
