"""The backend pool (lipsync_proxy.backends): the addresses a name resolves to, followed; each address's
watched health routing the calls; a connection to each SERVING address, taken in turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import grpc
import pytest

from lipsync_common.waiting import TIME_UNIT, eventually
from lipsync_proxy import backends
from lipsync_proxy.backends import NOT_SERVING, SERVING, Backend, BackendPool
from lipsync_proxy.errors import BackendError
from lipsync_proxy.http2 import Http2Connection
from lipsync_proxy.targets import Address, Source

from .doubles import DoubleConfig, RunningDouble, set_double_serving, start_double

CONFIG = DoubleConfig(frames=3000, delay_s_per_frame=0.001, payload_size=64)


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


class Changes(list[tuple[str, str, str]]):
    def __call__(self, backend: Backend, previous: str) -> None:
        self.append((backend.name, previous, backend.status))


async def connected(pool: BackendPool) -> Http2Connection:
    """The connection of the next pick (each pick takes the next backend in turn)."""
    for _ in range(int(500 * TIME_UNIT)):
        picked = pool.pick()
        if picked is not None:
            return picked[1]
        await asyncio.sleep(0.01)
    raise AssertionError("no connection to a SERVING backend")


async def test_only_a_serving_backend_gets_calls_and_one_that_serves_again_gets_them_again(
    double: RunningDouble,
) -> None:
    changes = Changes()
    pool = BackendPool([Source("double", fixed=Address("127.0.0.1", double.port))], Names({}), changes)
    pool.start()
    first = await connected(pool)
    assert pool.serving

    await set_double_serving(double.address, False)
    await eventually(lambda: pool.pick() is None, "NOT_SERVING seen")
    assert not pool.serving
    await eventually(lambda: first.closing, "its connection closing")

    await set_double_serving(double.address, True)
    assert await connected(pool) is not first
    assert changes == [
        ("double", "UNKNOWN", SERVING),
        ("double", SERVING, NOT_SERVING),
        ("double", NOT_SERVING, SERVING),
    ]
    await pool.close()


async def test_calls_follow_the_addresses_a_name_resolves_to(
    double: RunningDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "RESOLVE_INTERVAL_S", 0.05)
    other = await start_double(double.port, CONFIG, host="127.0.0.2")
    names = Names({"lipsync": ["127.0.0.1", "127.0.0.2"]})
    pool = BackendPool([Source(f"lipsync:{double.port}", "lipsync", double.port)], names)
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
    assert sorted(b.name for b in pool.backends) == [
        f"lipsync:{double.port} (127.0.0.1)",
        f"lipsync:{double.port} (127.0.0.2)",
    ]

    # A lookup that fails keeps the addresses; one that no longer gives an address drops it.
    del names.names["lipsync"]
    await asyncio.sleep(0.2)
    assert await authorities() == both
    names.names["lipsync"] = ["127.0.0.1"]
    await eventually(lambda: len(pool.backends) == 1, "the address dropped")
    assert await authorities() == {f"127.0.0.1:{double.port}"}
    await pool.close()
    await other.server.stop(None)


async def test_a_backend_that_cannot_be_reached_gets_no_calls() -> None:
    pool = BackendPool(
        [Source("dead", fixed=Address("127.0.0.1", 1)), Source("nowhere:1", "nowhere", 1)], Names({})
    )
    pool.start()
    await asyncio.sleep(0.3)
    # The name that cannot be resolved gives no address; the one that does not answer is not SERVING.
    assert [(b.name, b.serving) for b in pool.backends] == [("dead", False)]
    assert pool.pick() is None
    await pool.close()


async def test_a_connection_closed_by_its_backend_is_opened_again(double: RunningDouble) -> None:
    pool = BackendPool([Source("double", fixed=Address("127.0.0.1", double.port))], Names({}))
    pool.start()
    first = await connected(pool)
    first.abort()
    await asyncio.wait_for(first.closed, 5)
    assert await connected(pool) is not first
    await pool.close()


async def test_lookups_and_streams_take_a_serving_backends_channel(double: RunningDouble) -> None:
    pool = BackendPool(
        [
            Source("dead", fixed=Address("127.0.0.1", 1)),
            Source("double", fixed=Address("127.0.0.1", double.port)),
        ],
        Names({}),
    )
    pool.start()
    await connected(pool)
    serving = next(b for b in pool.backends if b.serving)
    deadline = asyncio.get_running_loop().time() + 5
    assert {id(await pool.channel(deadline)) for _ in range(4)} == {id(serving.channel)}
    await pool.close()


async def test_a_call_waits_for_the_first_status_and_a_connection_but_fails_at_once_when_none_serves(
    double: RunningDouble,
) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    pool = BackendPool([Source("double", fixed=Address("127.0.0.1", double.port))], Names({}))
    pool.start()
    # Its status is not known yet, then its connection is opening: the call waits for both.
    backend, _ = await asyncio.wait_for(pool.wait(deadline), 5 * TIME_UNIT)
    assert backend.serving
    await pool.close()

    dead = BackendPool([Source("dead", fixed=Address("127.0.0.1", 1))], Names({}))
    dead.start()
    await eventually(lambda: dead.backends[0].status == NOT_SERVING, "the dead backend NOT_SERVING")
    for call in (dead.wait(deadline), dead.channel(deadline)):
        with pytest.raises(BackendError) as raised:
            await asyncio.wait_for(call, 5 * TIME_UNIT)
        assert raised.value.status == grpc.StatusCode.UNAVAILABLE
    await dead.close()


async def test_a_backend_without_the_health_service_is_not_serving_so_calls_fail_at_once() -> None:
    running = await start_double(0, CONFIG, with_health=False)
    pool = BackendPool([Source("no health", fixed=Address("127.0.0.1", running.port))], Names({}))
    pool.start()
    await eventually(lambda: pool.backends[0].status == NOT_SERVING, "the backend NOT_SERVING")
    deadline = asyncio.get_running_loop().time() + 60
    with pytest.raises(BackendError) as raised:
        await asyncio.wait_for(pool.wait(deadline), 5 * TIME_UNIT)
    assert raised.value.status == grpc.StatusCode.UNAVAILABLE
    await pool.close()
    await running.server.stop(None)
