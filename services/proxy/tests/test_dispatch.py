"""How frames reach the backends (lipsync_proxy.dispatch): a lone frame as a unary call, frames that
arrive together as one batch, both on the proxy's own connection, against the in-process double. Each
keeps what a unary call per frame gives: the frame's own reply or error, its deadline, its cancellation
at the server; and tracing changes nothing but the call's `traceparent`."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Sequence

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Span

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_protos.lipsync.v1 import lipsync_pb2
from lipsync_proxy import dispatch
from lipsync_proxy.backend import BackendClient
from lipsync_proxy.backends import BackendPool
from lipsync_proxy.dispatch import FrameDispatcher
from lipsync_proxy.errors import BackendError
from lipsync_proxy.http2 import USER_AGENT, CallError, Http2Connection, Outcome
from lipsync_proxy.targets import Address, Source
from lipsync_proxy.wire import INFER_METHOD, encode_infer_request

from .doubles import DoubleConfig, RunningDouble, frame_id_of, start_double

# Frame f takes f ms: frame 2000 runs long enough to be given up.
SLOW = 2000
SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def resolve_nothing(host: str) -> list[str]:
    raise OSError(host)


@pytest.fixture
async def double() -> AsyncIterator[RunningDouble]:
    running = await start_double(0, DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=64))
    yield running
    await running.server.stop(None)


@pytest.fixture
async def pool(double: RunningDouble) -> AsyncIterator[BackendPool]:
    pool = BackendPool([Source("double", fixed=Address("127.0.0.1", double.port))], resolve_nothing)
    pool.start()
    await eventually(lambda: pool.pick() is not None, "a connection to the SERVING double")
    yield pool
    await pool.close()


class Recorded(list[tuple[str, int]]):
    """What the dispatcher reported sending: (method, frames) per call."""

    def __call__(self, method: str, frames: int, seconds: float) -> None:
        assert seconds >= 0
        self.append((method, frames))


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def make_dispatcher(pool: BackendPool, recorded: Recorded) -> Callable[..., FrameDispatcher]:
    def make(max_batch: int = 16, timeout_s: float = 5 * TIME_UNIT, **kwargs: object) -> FrameDispatcher:
        return FrameDispatcher(pool, timeout_s, max_batch, record=recorded, **kwargs)  # type: ignore[arg-type]

    return make


def request(frame_id: int, model: str = "demo") -> bytes:
    return encode_infer_request(model.encode(), frame_id)


async def frames_of(dispatcher: FrameDispatcher, frame_ids: list[int]) -> list[int]:
    """The frame ids the double rendered for requests submitted together."""
    replies = await asyncio.gather(*(dispatcher.submit(request(f)) for f in frame_ids))
    assert not any(reply.HasField("error") for reply in replies), replies
    return [frame_id_of(reply.image) for reply in replies]


async def test_a_lone_frame_leaves_at_once_as_a_unary_call_on_the_own_connection(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher()
    assert await frames_of(dispatcher, [7]) == [7]
    assert recorded == [("Infer", 1)]
    assert double.servicer.infer_agents == [USER_AGENT]
    await dispatcher.close()


async def test_frames_that_arrive_together_go_as_one_batch_and_each_gets_its_own_frame(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher()
    assert await frames_of(dispatcher, [1, 2, 3, 4]) == [1, 2, 3, 4]
    # The first left at once; the others were gathered at the loop's turn.
    assert sorted(recorded) == [("Infer", 1), ("InferBatch", 3)]
    assert double.servicer.batch_agents == [USER_AGENT]
    await dispatcher.close()


async def test_a_batch_holds_at_most_max_batch_frames(
    make_dispatcher: Callable[..., FrameDispatcher], recorded: Recorded
) -> None:
    dispatcher = make_dispatcher(max_batch=2)
    assert await frames_of(dispatcher, [1, 2, 3, 4, 5, 6]) == [1, 2, 3, 4, 5, 6]
    assert sorted(recorded) == [("Infer", 1), ("Infer", 1), ("InferBatch", 2), ("InferBatch", 2)]
    await dispatcher.close()


async def test_an_answered_frame_is_freed_at_once_not_left_to_the_garbage_collector(
    make_dispatcher: Callable[..., FrameDispatcher],
) -> None:
    # A reference cycle between a frame and its call would keep each reply until a collection, which
    # is how clients that stop reading came to hold other clients' frames (`make chaos`).
    dispatcher = make_dispatcher()
    gc.collect()
    gc.disable()
    try:
        assert await frames_of(dispatcher, [1, 2, 3, 4]) == [1, 2, 3, 4]
        left = [o for o in gc.get_objects() if isinstance(o, dispatch._Frame | dispatch._Call)]
        assert left == []
    finally:
        gc.enable()
    await dispatcher.close()


async def unary_error(double: RunningDouble, frame_id: int, model: str) -> tuple[str, str]:
    """The error reply of the frame's own unary call through grpc."""
    async with grpc.aio.insecure_channel(double.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary(INFER_METHOD)(request(frame_id, model), timeout=5 * TIME_UNIT)
    error = BackendError(failed.value.code(), failed.value.details() or "")
    return error.code, error.message


@pytest.mark.parametrize("together", [1, 3], ids=["alone", "in a batch"])
async def test_a_bad_frame_gets_its_own_error_as_from_its_own_unary_call_and_the_others_their_frames(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, together: int
) -> None:
    dispatcher = make_dispatcher()
    frames = [(1, "demo"), (5000, "demo"), (1, "nobody")][:together] if together > 1 else [(5000, "demo")]
    replies = await asyncio.gather(
        *(dispatcher.submit(request(f, m)) for f, m in frames), return_exceptions=True
    )
    for (frame_id, model), reply in zip(frames, replies, strict=True):
        assert isinstance(reply, lipsync_pb2.InferResponse | BackendError)
        if (frame_id, model) == (1, "demo"):
            assert isinstance(reply, lipsync_pb2.InferResponse)
            assert frame_id_of(reply.image) == 1
            continue
        # Alone, the call fails; in a batch, its item is the frame's error.
        error = reply if isinstance(reply, BackendError) else None
        if error is None:
            with pytest.raises(BackendError) as failed:
                BackendClient.check(reply)  # type: ignore[arg-type]
            error = failed.value
        assert (error.code, error.message) == await unary_error(double, frame_id, model)
    await dispatcher.close()


@pytest.mark.parametrize("together", [1, 2], ids=["alone", "in a batch"])
async def test_a_frame_past_its_deadline_fails_as_a_unary_call_does_and_is_cancelled_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, together: int
) -> None:
    dispatcher = make_dispatcher(timeout_s=0.2)
    # One more frame first, alone, so that `together` of them go in one call.
    first = dispatcher.submit(request(SLOW + 10))
    results = await asyncio.gather(
        first, *(dispatcher.submit(request(SLOW + i)) for i in range(together)), return_exceptions=True
    )
    assert [(e.code, e.message) for e in results if isinstance(e, BackendError)] == [
        ("DEADLINE_EXCEEDED", "the lip-sync backend did not answer in time")
    ] * (together + 1)
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 0, "the frames cancelled at the backend")
    assert servicer.cancelled["frame"] == together + 1
    await dispatcher.close()


async def test_a_call_is_cancelled_at_the_server_once_every_frame_in_it_is_given_up(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    # The first goes alone at once, the other two in one batch.
    alone, first, second = (dispatcher.submit(request(SLOW + i)) for i in range(3))
    servicer = double.servicer
    await eventually(lambda: servicer.active["frame"] == 3, "the frames at the backend")
    assert servicer.calls["InferBatch"] == 1
    first.cancel()
    await asyncio.sleep(0.1)
    # The other frame is still wanted: the batch goes on.
    assert servicer.cancelled["frame"] == 0
    second.cancel()
    await eventually(lambda: servicer.cancelled["frame"] == 2, "the batch cancelled at the backend")
    alone.cancel()
    await eventually(lambda: servicer.cancelled["frame"] == 3, "the lone frame cancelled at the backend")
    # The connection carries the next frames.
    assert await frames_of(dispatcher, [1, 2, 3]) == [1, 2, 3]
    await dispatcher.close()


async def test_a_lone_frame_given_up_the_moment_it_left_has_its_call_cancelled_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], pool: BackendPool, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    assert await frames_of(dispatcher, [1]) == [1]  # a connection is open: the next call leaves at once
    picked = pool.pick()
    assert picked is not None
    calls = picked[1]._client._streams
    future = dispatcher.submit(request(SLOW))
    assert len(calls) == 1, "the call left with the submit"
    future.cancel()
    # Well before the slow frame's 2 s: the call is reset, not left to run.
    await eventually(lambda: not calls, "the call cancelled", within_s=1.0)
    assert await frames_of(dispatcher, [2]) == [2]
    await dispatcher.close()


class RefusingConnection(Http2Connection):
    """A connection whose server takes no call, as one going away does."""

    def __init__(self) -> None:
        super().__init__("refusing:1")
        self.refused = 0

    def call(
        self,
        method: str,
        metadata: Sequence[tuple[str, str]],
        timeout_s: float,
        message: bytes,
        done: Callable[[Outcome], None],
    ) -> int:
        self.refused += 1
        error = CallError(grpc.StatusCode.UNAVAILABLE, "refused", retriable=True)
        asyncio.get_running_loop().call_soon(done, error)
        return 1


async def test_a_call_a_backend_never_took_goes_once_more_to_the_next(
    make_dispatcher: Callable[..., FrameDispatcher], pool: BackendPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = RefusingConnection()
    real = pool.pick
    picks = iter([refusing])
    monkeypatch.setattr(
        pool, "pick", lambda: (pool.backends[0], next(picks)) if refusing.refused == 0 else real()
    )
    dispatcher = make_dispatcher()
    assert await frames_of(dispatcher, [1]) == [1]
    assert refusing.refused == 1

    # A second refusal is the frame's error: it goes to the next backend only once.
    monkeypatch.setattr(pool, "pick", lambda: (pool.backends[0], refusing))
    with pytest.raises(BackendError) as failed:
        await dispatcher.submit(request(1))
    assert failed.value.code == "UNAVAILABLE"
    assert refusing.refused == 3
    await dispatcher.close()


async def test_with_no_backend_serving_a_frame_fails_unavailable_at_once(recorded: Recorded) -> None:
    pool = BackendPool([Source("nothing", fixed=Address("127.0.0.1", 1))], resolve_nothing)
    pool.start()
    dispatcher = FrameDispatcher(pool, 60.0, 16, record=recorded)
    with pytest.raises(BackendError) as failed:
        await asyncio.wait_for(dispatcher.submit(request(1)), 5 * TIME_UNIT)
    assert failed.value.code == "UNAVAILABLE"
    await dispatcher.close()
    await pool.close()


async def test_closing_fails_what_is_under_way_and_refuses_more(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    future = dispatcher.submit(request(SLOW))
    await eventually(lambda: double.servicer.active["frame"] == 1, "the frame at the backend")
    await dispatcher.close()
    with pytest.raises(BackendError) as failed:
        await future
    assert failed.value.code == "UNAVAILABLE"
    with pytest.raises(BackendError) as refused:
        await dispatcher.submit(request(1))
    assert refused.value.code == "UNAVAILABLE"
    await eventually(lambda: double.servicer.active["frame"] == 0, "the frame cancelled at the backend")


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


async def test_a_sampled_frame_takes_the_same_carrier_and_its_call_carries_its_span(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    dispatcher = make_dispatcher(tracer=tracer)
    spans = [tracer.start_span(f"frame {i}") for i in range(3)]
    futures = [dispatcher.submit(request(1))]
    futures += [dispatcher.submit(request(i), spans[i]) for i in range(3)]
    await asyncio.gather(*futures)
    # Nothing changed the carriers: one frame alone, then one batch of the three sampled ones.
    assert sorted(recorded) == [("Infer", 1), ("InferBatch", 3)]
    (untraced,) = [t for t in double.servicer.traceparents if t.endswith("-00")]
    (batch,) = [t for t in double.servicer.traceparents if t != untraced]
    assert batch == traceparent_of(spans[0])
    for span in spans:
        span.end()
    finished = {span.name: span for span in exporter.get_finished_spans()}
    assert len(finished) == 3, "the call has no span of its own"
    assert not finished["frame 0"].links
    parent = spans[0].get_span_context().span_id
    for name in ("frame 1", "frame 2"):
        assert [link.context.span_id for link in finished[name].links] == [parent], name
    await dispatcher.close()


async def test_frames_with_a_clients_sampled_context_never_share_a_call(
    make_dispatcher: Callable[..., FrameDispatcher], double: RunningDouble, recorded: Recorded
) -> None:
    dispatcher = make_dispatcher()
    futures = [dispatcher.submit(request(0))]
    futures += [dispatcher.submit(request(i), traceparent=SAMPLED) for i in range(1, 4)]
    futures += [dispatcher.submit(request(i)) for i in range(4, 6)]
    await asyncio.gather(*futures)
    assert sorted(recorded) == [("Infer", 1), ("Infer", 1), ("Infer", 1), ("InferBatch", 3)]
    # Without a tracer of the proxy's, the client's context goes to the server as it came.
    assert double.servicer.traceparents.count(SAMPLED) == 3
    await dispatcher.close()
