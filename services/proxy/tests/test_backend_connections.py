"""Frame batches on the proxy's own HTTP/2 connections (lipsync_proxy.backend_connections): only to a
backend that serves and is one address, with what a batch through grpc gives (each frame's reply or
error, its deadline, its cancellation at the server), and through grpc whenever they cannot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from lipsync_proxy.backend_connections import Address, BackendConnections, address_of
from lipsync_proxy.dispatch import FrameDispatcher
from lipsync_proxy.errors import BackendError
from lipsync_proxy.http2 import USER_AGENT, CallError, Http2Connection
from lipsync_proxy.targets import Backend
from lipsync_proxy.wire import decode_infer_response, encode_infer_request

from .doubles import DoubleConfig, RunningDouble, frame_id_of, start_double
from .processes import TIME_UNIT

SLOW = 2000


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("127.0.0.1:50051", Address("127.0.0.1", 50051)),
        ("lipsync-server:50051", Address("lipsync-server", 50051)),
        ("[::1]:7", Address("::1", 7)),
        ("ipv4:10.0.0.1:50051", Address("10.0.0.1", 50051)),
        ("ipv6:[::ffff:10.0.0.1]:50051", Address("::ffff:10.0.0.1", 50051)),
        ("unix:/run/lipsync.sock", Address(path="/run/lipsync.sock")),
        ("unix:///run/lipsync.sock", Address(path="/run/lipsync.sock")),
        ("ipv4:10.0.0.1:1,10.0.0.2:1", None),
        ("dns:///lipsync-server-headless:50051", None),
        ("unix-abstract:lipsync", None),
        ("unix:relative.sock", None),
    ],
)
def test_only_a_backend_that_is_one_address_can_have_a_connection(
    target: str, address: Address | None
) -> None:
    assert address_of(target) == address


@pytest.fixture
async def double() -> AsyncIterator[RunningDouble]:
    running = await start_double(0, DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=64))
    yield running
    await running.server.stop(None)


@pytest.fixture
async def channel(double: RunningDouble) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(double.address) as channel:
        yield channel


@pytest.fixture
async def connections(double: RunningDouble) -> AsyncIterator[BackendConnections]:
    pool = BackendConnections([Backend("double", double.address)])
    yield pool
    await pool.close()


@pytest.fixture
def make_dispatcher(
    channel: grpc.aio.Channel, connections: BackendConnections
) -> Callable[..., FrameDispatcher]:
    def make(timeout_s: float = 5 * TIME_UNIT) -> FrameDispatcher:
        return FrameDispatcher(channel, timeout_s, 2, 16, metadata=lambda: (), connections=connections)

    return make


def request(frame_id: int, model: str = "demo") -> bytes:
    return encode_infer_request(model.encode(), frame_id)


async def batch_of(dispatcher: FrameDispatcher, frames: list[int]) -> list[int | tuple[int, str]]:
    """Each frame's rendered frame id, or its error; sent together, so that all but the first (which
    leaves at once, on a stream) go as one batch."""
    replies = await asyncio.gather(*(dispatcher.infer(request(f)) for f in frames))
    decoded = [decode_infer_response(reply) for reply in replies]
    return [d.error if d.error is not None else frame_id_of(bytes(d.image)) for d in decoded]


async def connected(connections: BackendConnections) -> Http2Connection:
    for _ in range(int(300 * TIME_UNIT)):
        connection = connections.pick()
        if connection is not None:
            return connection
        await asyncio.sleep(0.01)
    raise AssertionError("no connection was opened")


async def test_batches_go_on_the_own_connection_only_while_the_backend_serves(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    agents = double.servicer.batch_agents
    assert await batch_of(dispatcher, [1, 2, 3]) == [1, 2, 3]
    assert agents[-1].startswith("grpc-python")

    connections.set_serving("double", True)
    await connected(connections)
    assert await batch_of(dispatcher, [4, 5, 6, 7]) == [4, 5, 6, 7]
    assert agents[-1] == USER_AGENT
    assert double.servicer.batch_sizes[-1] == 3

    connections.set_serving("double", False)
    assert connections.pick() is None
    assert await batch_of(dispatcher, [8, 9, 10]) == [8, 9, 10]
    assert agents[-1].startswith("grpc-python")
    await dispatcher.close()


async def test_a_frame_in_a_batch_on_the_own_connection_gets_its_own_error(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    connections.set_serving("double", True)
    await connected(connections)
    replies = await batch_of(dispatcher, [0, 1, 5000, 2])
    assert replies == [
        0,
        1,
        (grpc.StatusCode.OUT_OF_RANGE.value[0], "frame_id 5000 is outside [0, 3000) for model 'demo'"),
        2,
    ]
    assert double.servicer.batch_agents == [USER_AGENT]
    await dispatcher.close()


async def test_a_batch_past_its_deadline_on_the_own_connection_fails_and_is_cancelled_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher(timeout_s=0.2)
    connections.set_serving("double", True)
    await connected(connections)
    results = await asyncio.gather(
        *(dispatcher.infer(request(SLOW + i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)
    assert {r.code for r in results if isinstance(r, BackendError)} == {"DEADLINE_EXCEEDED"}
    assert double.servicer.batch_agents == [USER_AGENT]
    for _ in range(int(300 * TIME_UNIT)):
        if double.servicer.cancelled["InferBatch"] == 1:
            break
        await asyncio.sleep(0.01)
    assert double.servicer.cancelled["InferBatch"] == 1
    await dispatcher.close()


async def test_giving_up_every_frame_of_a_batch_on_the_own_connection_cancels_it_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    connections.set_serving("double", True)
    await connected(connections)
    tasks = [asyncio.create_task(dispatcher.infer(request(SLOW + i))) for i in range(3)]
    for _ in range(int(300 * TIME_UNIT)):
        if double.servicer.active["InferBatch"] == 1:
            break
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(int(300 * TIME_UNIT)):
        if double.servicer.cancelled["InferBatch"] == 1:
            break
        await asyncio.sleep(0.01)
    assert double.servicer.cancelled["InferBatch"] == 1
    # The connection carries the next batch.
    assert await batch_of(dispatcher, [1, 2, 3]) == [1, 2, 3]
    assert double.servicer.batch_agents[-1] == USER_AGENT
    await dispatcher.close()


class RefusingConnection(Http2Connection):
    """A connection whose server takes no call, as one going away does."""

    def __init__(self) -> None:
        super().__init__("refusing:1")
        self.refused = 0

    def call(self, *args: object, **kwargs: object) -> tuple[int, asyncio.Future[bytearray]]:
        self.refused += 1
        future: asyncio.Future[bytearray] = asyncio.get_running_loop().create_future()
        future.set_exception(CallError(grpc.StatusCode.UNAVAILABLE, "refused", retriable=True))
        return 1, future


async def test_a_batch_the_backend_never_took_goes_again_through_grpc(
    make_dispatcher: Callable[..., FrameDispatcher],
    connections: BackendConnections,
    double: RunningDouble,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusing = RefusingConnection()
    monkeypatch.setattr(connections, "pick", lambda: refusing)
    dispatcher = make_dispatcher()
    assert await batch_of(dispatcher, [1, 2, 3]) == [1, 2, 3]
    assert refusing.refused == 1
    assert double.servicer.batch_agents[-1].startswith("grpc-python")
    await dispatcher.close()


async def test_a_backend_that_cannot_be_reached_leaves_batches_to_grpc(channel: grpc.aio.Channel) -> None:
    pool = BackendConnections([Backend("gone", "127.0.0.1:1")])
    pool.set_serving("gone", True)
    assert pool.pick() is None
    await asyncio.sleep(0.1)
    # The failed attempt is not repeated at once.
    assert pool.pick() is None
    await pool.close()


async def test_a_connection_closed_by_its_backend_is_opened_again(
    connections: BackendConnections,
) -> None:
    connections.set_serving("double", True)
    first = await connected(connections)
    first.abort()
    await asyncio.wait_for(first.closed, 5)
    second = await connected(connections)
    assert second is not first
