"""`make run`, the README's command for running the stack natively, listens on loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.ports import free_port
from lipsync_common.waiting import TIME_UNIT, wait_until

REPO = Path(__file__).resolve().parents[2]
LISTEN = "0A"
# Loopback addresses as /proc/net/tcp{,6} write them: 127.0.0.1, ::1 and ::ffff:127.0.0.1.
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else ():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """The (address, port) pairs the processes `pids` listen on, read from /proc/net/tcp{,6}; every
    loopback address reads "loopback"."""
    inodes = socket_inodes(pids)
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            _slot, local, _remote, state, *_rest, inode = line.split()[:10]
            if state == LISTEN and inode in inodes:
                address, port = local.split(":")
                found.add(("loopback" if address in LOOPBACK else address, int(port, 16)))
    return found


def group_pids(group: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == group:
                    pids.add(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    ports = {"grpc": free_port(), "ws": free_port(), "metrics": free_port()}
    env = {**os.environ, "LIPSYNC_METRICS_PORT": str(ports["metrics"]), "LIPSYNC_CACHE_DIR": str(tmp_path)}
    env.pop("HOST", None)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={ports['grpc']}", f"WS_PORT={ports['ws']}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process, ports
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30 * TIME_UNIT)


def test_make_run_listens_on_loopback_only(make_run: tuple[subprocess.Popen[bytes], dict[str, int]]) -> None:
    process, ports = make_run
    wanted = set(ports.values())

    def all_listening() -> bool:
        assert process.poll() is None, "make run exited"
        return wanted <= {port for _address, port in listening(group_pids(process.pid))}

    wait_until(all_listening, 120 * TIME_UNIT, "the server, its metrics and the proxy listening")
    assert listening(group_pids(process.pid)) == {("loopback", port) for port in wanted}
