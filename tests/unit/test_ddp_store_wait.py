"""ddp/store_wait.py: a node that cannot reach the rendezvous store says so in one line, naming the endpoint
and the reason, within the timeout (at once for a name that does not resolve) instead of starting torchrun."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ddp import store_wait


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_listening_store_passes_at_once() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        endpoint = f"127.0.0.1:{server.getsockname()[1]}"
        assert store_wait.unreachable_store("node2", endpoint, timeout_s=5) is None
        assert store_wait.main(["--node", "node2", "--endpoint", endpoint, "--timeout", "5"]) == 0


def test_a_store_that_starts_later_is_waited_for() -> None:
    port = _free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def start_late() -> None:
        time.sleep(1.5)
        server.bind(("127.0.0.1", port))
        server.listen()

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        assert store_wait.unreachable_store("node2", f"127.0.0.1:{port}", timeout_s=15) is None
    finally:
        starter.join()
        server.close()


def test_no_store_fails_within_the_timeout_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    code = store_wait.main(["--node", "node2", "--endpoint", endpoint, "--timeout", "2"])
    took = time.monotonic() - started
    assert code == store_wait.EXIT_PROBLEM
    assert 1.5 <= took < 6, took
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"node2: cannot reach the rendezvous store at {endpoint} within 2 s")
    assert "refused" in line.lower()


def test_a_name_that_does_not_resolve_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Resolution faked: the test sends no query to any resolver.
    def no_such_name(host: str, *_: object, **__: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    started = time.monotonic()
    problem = store_wait.unreachable_store("node2", "node1.cluster:29400", timeout_s=60)
    assert time.monotonic() - started < 1
    assert problem is not None
    assert problem.startswith("node2: the rendezvous endpoint node1.cluster:29400 does not resolve")
    assert "Name or service not known" in problem


@pytest.mark.parametrize("endpoint", ["node1", "node1:", ":29400", "node1:http", "node1:70000"])
def test_a_bad_endpoint_is_named(endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert store_wait.main(["--node", "node2", "--endpoint", endpoint, "--timeout", "1"]) == 2
    assert f"node2: rendezvous endpoint {endpoint!r}: expected HOST:PORT" in capsys.readouterr().err


def test_ipv6_endpoints_are_split_like_torchrun_takes_them() -> None:
    assert store_wait.split_endpoint("[fd00::1]:29400") == ("fd00::1", 29400)
    assert store_wait.split_endpoint("10.0.0.1:29400") == ("10.0.0.1", 29400)
