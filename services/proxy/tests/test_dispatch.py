"""How frames reach the backend (lipsync_proxy.dispatch): streams, batches and unary calls, against the
in-process double. Each carrier must keep what a unary call per frame gives: the frame's own reply or
error, its deadline, and its cancellation at the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_proxy import dispatch
from lipsync_proxy.backend import BackendClient
from lipsync_proxy.dispatch import FrameDispatcher
from lipsync_proxy.errors import BackendError
from lipsync_proxy.metrics import Metrics
from lipsync_proxy.wire import decode_infer_response, encode_infer_request

from .doubles import DoubleConfig, RunningDouble, frame_id_of, start_double

# Frame f takes f ms: frame 2000 runs long enough to be given up.
SLOW = 2000


@pytest.fixture
async def double() -> AsyncIterator[RunningDouble]:
    running = await start_double(0, DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=64))
    yield running
    await running.server.stop(None)


@pytest.fixture
async def channel(double: RunningDouble) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(double.address) as channel:
        yield channel


class Recorded(list[tuple[str, int]]):
    """What the dispatcher reported sending: (method, frames) per exchange."""

    def __call__(self, method: str, frames: int, seconds: float) -> None:
        assert seconds >= 0
        self.append((method, frames))


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def make_dispatcher(channel: grpc.aio.Channel, recorded: Recorded) -> Callable[..., FrameDispatcher]:
    def make(streams: int = 2, max_batch: int = 16, timeout_s: float = 5 * TIME_UNIT) -> FrameDispatcher:
        return FrameDispatcher(channel, timeout_s, streams, max_batch, metadata=lambda: (), record=recorded)

    return make


def request(frame_id: int, model: str = "demo") -> bytes:
    return encode_infer_request(model.encode(), frame_id)


async def frame_of(dispatcher: FrameDispatcher, frame_id: int) -> int:
    """The frame id the double rendered for a request of `frame_id`."""
    reply = decode_infer_response(await dispatcher.infer(request(frame_id)))
    assert reply.error is None, reply.error
    return frame_id_of(bytes(reply.image))


async def test_a_lone_frame_goes_on_a_stream(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher()
    assert await frame_of(dispatcher, 5) == 5
    assert await frame_of(dispatcher, 6) == 6
    assert recorded == [("StreamInfer", 1), ("StreamInfer", 1)]
    # The second frame reused the first one's stream.
    assert double.servicer.calls["StreamInfer"] == 1
    assert double.servicer.calls["Infer"] == double.servicer.calls["InferBatch"] == 0
    await dispatcher.close()


async def test_frames_that_arrive_together_go_as_one_batch_and_each_gets_its_own_frame(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher()
    frames = [9, 3, 7, 1, 0, 12, 4, 4, 30, 2]
    assert await asyncio.gather(*(frame_of(dispatcher, f) for f in frames)) == frames
    # The first found nothing else under way and left at once; the others waited for the loop's turn.
    assert sorted(recorded) == [("InferBatch", 9), ("StreamInfer", 1)]
    assert double.servicer.batch_sizes == [9]
    await dispatcher.close()


async def test_a_batch_holds_at_most_max_batch_frames_and_a_lone_rest_takes_a_stream(
    make_dispatcher: Callable[..., FrameDispatcher], recorded: Recorded
) -> None:
    dispatcher = make_dispatcher(max_batch=8)
    frames = list(range(17))
    assert await asyncio.gather(*(frame_of(dispatcher, f) for f in frames)) == frames
    assert sorted(recorded) == [("InferBatch", 8), ("InferBatch", 8), ("StreamInfer", 1)]
    await dispatcher.close()


async def test_with_every_stream_busy_a_lone_frame_is_a_unary_call(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher(streams=1)
    slow = asyncio.create_task(frame_of(dispatcher, 300))
    await eventually(lambda: double.servicer.active["frame"] == 1, "the first frame at the backend")
    assert await frame_of(dispatcher, 2) == 2
    assert await slow == 300
    assert recorded == [("Infer", 1), ("StreamInfer", 1)]
    await dispatcher.close()


async def test_without_streams_a_lone_frame_is_a_unary_call(
    make_dispatcher: Callable[..., FrameDispatcher], recorded: Recorded
) -> None:
    dispatcher = make_dispatcher(streams=0)
    assert await frame_of(dispatcher, 3) == 3
    assert recorded == [("Infer", 1)]
    await dispatcher.close()


@pytest.mark.parametrize("together", [1, 3], ids=["on a stream", "in a batch"])
async def test_a_bad_frame_gets_its_own_error_and_the_others_their_frames(
    make_dispatcher: Callable[..., FrameDispatcher], together: int
) -> None:
    dispatcher = make_dispatcher()
    frames = [1, 5000, 2][:together] if together > 1 else [5000]
    replies = await asyncio.gather(*(dispatcher.infer(request(f)) for f in frames))
    decoded = [decode_infer_response(reply) for reply in replies]
    bad = decoded[frames.index(5000)]
    assert bad.error == (
        grpc.StatusCode.OUT_OF_RANGE.value[0],
        "frame_id 5000 is outside [0, 3000) for model 'demo'",
    )
    assert [frame_id_of(bytes(d.image)) for d, f in zip(decoded, frames, strict=True) if f != 5000] == [
        f for f in frames if f != 5000
    ]
    await dispatcher.close()


async def backend_client(
    double: RunningDouble, timeout_s: float = 5 * TIME_UNIT, **kwargs: int
) -> BackendClient:
    return BackendClient(double.address, timeout_s, 60.0, Metrics(), **kwargs)


async def error_of(
    client: BackendClient, frame_id: int, model: str = "demo", traced: bool = False
) -> tuple[str, str]:
    with pytest.raises(BackendError) as failed:
        await client.infer(request(frame_id, model), traced=traced)
    return failed.value.code, failed.value.message


@pytest.mark.parametrize(
    "carrier",
    [{"streams": 2, "max_batch": 16}, {"streams": 0, "max_batch": 16}],
    ids=["stream", "unary"],
)
async def test_a_frame_error_reads_exactly_as_from_its_own_unary_call(
    double: RunningDouble, carrier: dict[str, int]
) -> None:
    client = await backend_client(double, **carrier)
    for frame_id, model in [(5000, "demo"), (1, "nobody")]:
        assert await error_of(client, frame_id, model) == await error_of(client, frame_id, model, traced=True)
    # And in a batch.
    batch = await asyncio.gather(
        *(client.infer(request(f, m)) for f, m in [(1, "demo"), (5000, "demo"), (1, "nobody")]),
        return_exceptions=True,
    )
    assert bytes(batch[0].image)[:2] == b"\xff\xd8"  # type: ignore[union-attr]
    codes = [(e.code, e.message) for e in batch[1:] if isinstance(e, BackendError)]
    assert codes == [
        await error_of(client, 5000, traced=True),
        await error_of(client, 1, "nobody", traced=True),
    ]
    await client.close()


@pytest.mark.parametrize("together", [1, 2], ids=["on a stream", "in a batch"])
async def test_a_frame_past_its_deadline_fails_as_a_unary_call_does_and_is_cancelled_at_the_server(
    double: RunningDouble, together: int
) -> None:
    client = await backend_client(double, timeout_s=0.2, streams=2, max_batch=16)
    results = await asyncio.gather(
        *(client.infer(request(SLOW + i)) for i in range(together)), return_exceptions=True
    )
    unary = await error_of(client, SLOW, traced=True)
    assert unary[0] == "DEADLINE_EXCEEDED"
    assert [(e.code, e.message) for e in results if isinstance(e, BackendError)] == [unary] * together
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 0, "the frames cancelled at the backend")
    # Every frame that ran out of time was cancelled there, the unary one too.
    assert servicer.cancelled["frame"] == together + 1
    await client.close()


async def test_giving_up_a_frame_on_a_stream_cancels_it_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    task = asyncio.create_task(dispatcher.infer(request(SLOW)))
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 1, "the frame at the backend")
    task.cancel()
    await eventually(lambda: servicer.cancelled["frame"] == 1, "the frame cancelled at the backend")
    assert servicer.active["frame"] == 0
    # The stream went with it; the next frame gets a new one.
    assert await frame_of(dispatcher, 4) == 4
    assert servicer.calls["StreamInfer"] == 2
    await dispatcher.close()


async def test_a_batch_is_cancelled_once_every_frame_in_it_is_given_up(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    # The first goes on a stream at once, the other two in one batch.
    alone, first, second = (asyncio.create_task(dispatcher.infer(request(SLOW + i))) for i in range(3))
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 3, "the frames at the backend")
    assert servicer.calls["InferBatch"] == 1
    first.cancel()
    await asyncio.sleep(0.1)
    # The other frame is still wanted: the batch goes on.
    assert servicer.active["frame"] == 3
    assert servicer.cancelled["frame"] == 0
    second.cancel()
    await eventually(lambda: servicer.cancelled["frame"] == 2, "the batch cancelled at the backend")
    assert servicer.active["frame"] == 1
    alone.cancel()
    await eventually(lambda: servicer.active["frame"] == 0, "the last frame cancelled at the backend")
    await dispatcher.close()


async def test_a_failing_stream_sends_its_frame_again_as_a_unary_call(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    double.servicer.fail_streams = grpc.StatusCode.UNAVAILABLE
    dispatcher = make_dispatcher()
    assert await frame_of(dispatcher, 8) == 8
    assert recorded == [("Infer", 1)]
    assert double.servicer.calls["StreamInfer"] == double.servicer.calls["Infer"] == 1
    await dispatcher.close()


async def test_a_stream_retires_after_its_age_and_the_server_sees_it_end_cleanly(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "LANE_MAX_AGE_S", 0.1)
    dispatcher = make_dispatcher()
    assert await frame_of(dispatcher, 1) == 1
    servicer = double.servicer
    await eventually(lambda: servicer.completed["StreamInfer"] == 1, "the stream ended by the proxy")
    assert servicer.cancelled["StreamInfer"] == 0
    assert await frame_of(dispatcher, 2) == 2
    assert servicer.calls["StreamInfer"] == 2
    await dispatcher.close()


async def test_retiring_the_streams_replaces_them_even_the_busy_ones(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher(streams=2)
    busy = asyncio.create_task(frame_of(dispatcher, 200))
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 1, "a frame on the first stream")
    assert await frame_of(dispatcher, 1) == 1  # on the second stream, now free
    dispatcher.retire_lanes()
    # The busy stream finishes its frame first, then ends like the free one.
    assert await busy == 200
    await eventually(lambda: servicer.completed["StreamInfer"] == 2, "both streams ended")
    assert await frame_of(dispatcher, 3) == 3
    assert servicer.calls["StreamInfer"] == 3
    await dispatcher.close()


async def test_closing_fails_what_is_under_way_and_refuses_more(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    task = asyncio.create_task(dispatcher.infer(request(SLOW)))
    await eventually(lambda: double.servicer.active["frame"] == 1, "the frame at the backend")
    await dispatcher.close()
    with pytest.raises(BackendError) as failed:
        await task
    assert failed.value.code == "UNAVAILABLE"
    with pytest.raises(BackendError) as refused:
        await dispatcher.infer(request(1))
    assert refused.value.code == "UNAVAILABLE"
    await eventually(lambda: double.servicer.active["frame"] == 0, "the frame cancelled at the backend")
