"""Frame batches on the proxy's own HTTP/2 connections (lipsync_proxy.backend_connections): only to a
backend address that serves, following the addresses a name resolves to, with what a batch through
grpc gives (each frame's reply or error, its deadline, its cancellation at the server), and through
grpc whenever they cannot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
import pytest

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_proxy import backend_connections
from lipsync_proxy.backend_connections import Address, BackendConnections, Source, sources_of
from lipsync_proxy.dispatch import FrameDispatcher
from lipsync_proxy.errors import BackendError
from lipsync_proxy.http2 import USER_AGENT, CallError, Http2Connection
from lipsync_proxy.targets import parse_grpc_addr
from lipsync_proxy.wire import decode_infer_response, encode_infer_request

from .doubles import DoubleConfig, RunningDouble, frame_id_of, set_double_serving, start_double

SLOW = 2000
CONFIG = DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=64)


def fixed(host: str = "", port: int = 0, path: str = "") -> Source:
    return Source(fixed=Address(host, port, path))


@pytest.mark.parametrize(
    ("grpc_addr", "sources"),
    [
        ("127.0.0.1:50051", [fixed("127.0.0.1", 50051)]),
        ("[::1]:7", [fixed("::1", 7)]),
        ("lipsync-server:50051", [Source("lipsync-server", 50051)]),
        ("dns:///lipsync-server-headless:50051", [Source("lipsync-server-headless", 50051)]),
        ("dns://10.0.0.53/lipsync:50051", [Source("lipsync", 50051)]),
        ("ipv4:10.0.0.1:1,10.0.0.2:2", [fixed("10.0.0.1", 1), fixed("10.0.0.2", 2)]),
        ("ipv6:[::ffff:10.0.0.1]:50051", [fixed("::ffff:10.0.0.1", 50051)]),
        ("unix:/run/lipsync.sock", [fixed(path="/run/lipsync.sock")]),
        ("unix:///run/lipsync.sock", [fixed(path="/run/lipsync.sock")]),
        ("a:1,b:2", [fixed("10.0.0.1", 1), fixed("10.0.0.2", 1), fixed("10.0.0.3", 2)]),
        ("xds:///lipsync", []),
        ("unix-abstract:lipsync", []),
        ("unix:relative.sock", []),
        ("dns:///no-port", []),
    ],
)
def test_the_pool_follows_the_addresses_grpc_addr_names(grpc_addr: str, sources: list[Source]) -> None:
    resolved = {"a": ["10.0.0.1", "10.0.0.2"], "b": ["10.0.0.3"]}
    assert sources_of(parse_grpc_addr(grpc_addr), resolved) == sources


def test_an_address_is_its_own_grpc_target() -> None:
    assert Address("10.0.0.1", 5).target == "ipv4:10.0.0.1:5"
    assert Address("::1", 5).target == "ipv6:[::1]:5"
    assert Address(path="/run/x.sock").target == "unix:/run/x.sock"


class Names:
    """A resolver whose answers the test changes; a name it does not know fails to resolve."""

    def __init__(self, names: Mapping[str, list[str]]) -> None:
        self.names = dict(names)

    async def __call__(self, host: str) -> list[str]:
        if host not in self.names:
            raise OSError(f"{host}: no such name")
        return self.names[host]


@pytest.fixture
async def double() -> AsyncIterator[RunningDouble]:
    running = await start_double(0, CONFIG)
    yield running
    await running.server.stop(None)


@pytest.fixture
async def channel(double: RunningDouble) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(double.address) as channel:
        yield channel


@pytest.fixture
async def connections(double: RunningDouble) -> AsyncIterator[BackendConnections]:
    pool = BackendConnections([fixed("127.0.0.1", double.port)], Names({}))
    pool.start()
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
    for _ in range(int(500 * TIME_UNIT)):
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
    await connected(connections)
    assert await batch_of(dispatcher, [4, 5, 6, 7]) == [4, 5, 6, 7]
    assert agents[-1] == USER_AGENT
    assert double.servicer.batch_sizes[-1] == 3

    await set_double_serving(double.address, False)
    await eventually(lambda: connections.pick() is None, "NOT_SERVING seen", within_s=5.0)
    assert await batch_of(dispatcher, [8, 9, 10]) == [8, 9, 10]
    assert agents[-1].startswith("grpc-python")

    await set_double_serving(double.address, True)
    await connected(connections)
    assert await batch_of(dispatcher, [11, 12, 13]) == [11, 12, 13]
    assert agents[-1] == USER_AGENT
    await dispatcher.close()


async def test_batches_follow_the_addresses_a_name_resolves_to(
    channel: grpc.aio.Channel, double: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend_connections, "RESOLVE_INTERVAL_S", 0.05)
    other = await start_double(double.port, CONFIG, host="127.0.0.2")
    names = Names({"lipsync": ["127.0.0.1", "127.0.0.2"]})
    pool = BackendConnections([Source("lipsync", double.port)], names)
    pool.start()

    async def authorities() -> set[str]:
        found = set()
        for _ in range(4):
            found.add((await connected(pool)).authority)
        return found

    both = {f"127.0.0.1:{double.port}", f"127.0.0.2:{double.port}"}
    for _ in range(int(500 * TIME_UNIT)):
        if await authorities() == both:
            break
        await asyncio.sleep(0.01)
    assert await authorities() == both
    dispatcher = FrameDispatcher(channel, 5 * TIME_UNIT, 2, 16, metadata=lambda: (), connections=pool)
    for first in range(0, 40, 4):
        assert await batch_of(dispatcher, [first, first + 1, first + 2, first + 3]) == [
            first,
            first + 1,
            first + 2,
            first + 3,
        ]
    assert USER_AGENT in double.servicer.batch_agents
    assert USER_AGENT in other.servicer.batch_agents

    # A lookup that fails keeps the addresses; one that no longer gives an address drops it.
    del names.names["lipsync"]
    await asyncio.sleep(0.2)
    assert await authorities() == both
    names.names["lipsync"] = ["127.0.0.1"]
    await eventually(lambda: len(pool.addresses) == 1, "the address dropped", within_s=5.0)
    assert await authorities() == {f"127.0.0.1:{double.port}"}
    await dispatcher.close()
    await pool.close()
    await other.server.stop(None)


async def test_a_frame_in_a_batch_on_the_own_connection_gets_its_own_error(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
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
    await connected(connections)
    results = await asyncio.gather(
        *(dispatcher.infer(request(SLOW + i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, BackendError) for r in results)
    assert {r.code for r in results if isinstance(r, BackendError)} == {"DEADLINE_EXCEEDED"}
    assert double.servicer.batch_agents == [USER_AGENT]
    await eventually(
        lambda: double.servicer.cancelled["InferBatch"] == 1, "the batch cancelled at the server"
    )
    await dispatcher.close()


async def test_giving_up_every_frame_of_a_batch_on_the_own_connection_cancels_it_at_the_server(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    dispatcher = make_dispatcher()
    await connected(connections)
    tasks = [asyncio.create_task(dispatcher.infer(request(SLOW + i))) for i in range(3)]
    await eventually(lambda: double.servicer.active["InferBatch"] == 1, "the batch at the server")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await eventually(
        lambda: double.servicer.cancelled["InferBatch"] == 1, "the batch cancelled at the server"
    )
    # The connection carries the next batch.
    assert await batch_of(dispatcher, [1, 2, 3]) == [1, 2, 3]
    assert double.servicer.batch_agents[-1] == USER_AGENT
    await dispatcher.close()


@pytest.mark.parametrize("together", [1, 3], ids=["a lone frame", "a batch"])
async def test_a_frame_grpc_found_no_backend_for_goes_on_a_ready_own_connection(
    connections: BackendConnections, double: RunningDouble, monkeypatch: pytest.MonkeyPatch, together: int
) -> None:
    ready = await connected(connections)
    # grpc's channel still waits to reconnect (here: to an address nothing listens on), while the pool
    # already has a connection to the backend that came back. A batch tries the pool first: that first
    # pick finds none ready yet.
    picks = iter([None] if together > 1 else [])
    monkeypatch.setattr(connections, "pick", lambda: next(picks, ready))
    async with grpc.aio.insecure_channel("127.0.0.1:1") as dead:
        dispatcher = FrameDispatcher(dead, 5 * TIME_UNIT, 0, 16, metadata=lambda: (), connections=connections)
        frames = [4, 5, 6][:together]
        replies = await asyncio.gather(*(dispatcher.infer(request(f)) for f in frames))
        assert [frame_id_of(bytes(decode_infer_response(r).image)) for r in replies] == frames
        assert double.servicer.calls["InferBatch" if together > 1 else "Infer"] == 1
        await dispatcher.close()


async def test_a_lone_frame_gathered_at_the_loops_turn_goes_as_a_unary_call_on_the_own_connection(
    make_dispatcher: Callable[..., FrameDispatcher], connections: BackendConnections, double: RunningDouble
) -> None:
    await connected(connections)
    dispatcher = make_dispatcher()
    # The first frame leaves at once on a lane; the second, alone at the loop's turn, does not.
    assert await batch_of(dispatcher, [4, 5]) == [4, 5]
    assert double.servicer.calls["StreamInfer"] == 1
    assert double.servicer.infer_agents == [USER_AGENT]
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


async def test_a_backend_that_cannot_be_reached_leaves_batches_to_grpc() -> None:
    pool = BackendConnections([fixed("127.0.0.1", 1), Source("nowhere", 1)], Names({}))
    pool.start()
    await asyncio.sleep(0.3)
    # The name that cannot be resolved gives no address; the one that does not answer is not SERVING.
    assert pool.addresses == {Address("127.0.0.1", 1): False}
    assert pool.pick() is None
    await pool.close()


async def test_a_connection_closed_by_its_backend_is_opened_again(
    connections: BackendConnections,
) -> None:
    first = await connected(connections)
    first.abort()
    await asyncio.wait_for(first.closed, 5)
    second = await connected(connections)
    assert second is not first
