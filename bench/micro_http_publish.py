"""CPU per HTTP publish in the Python half, in-process (no sockets): the owned HTTP protocol
(http/connection.py) of a real server (memory engine, or SQLite with `--sqlite`) is fed
`POST /v1/publish/bench/pub` requests (64-byte body, anonymous, 0 subscribers: the request
`pushwire bench http --only publish` sends) through a transport that drops what is written.

    .venv/bin/python bench/micro_http_publish.py [N] [--sqlite] [--json] [--token] [--vary]
        [--topics] [--profile]

Process CPU time per publish, one request per `data_received` (as the bench's clients send
them: one in flight per connection). Auth (anonymous), the topic ACL, the log append and
the reply are all in the path; the kernel's part (recv, the reply's send: about 5-10 us on
loopback) is not. `--sqlite` runs the same on a SQLite store in a temp dir (each publish
then waits for its commit: the number includes the store thread's share only as far as the
process's CPU time does). `--profile` prints cProfile's top functions instead. To compare
two versions, run it with PYTHONPATH pointing at the other tree's src/, interleaved.
`--json` sends the JSON form instead (`POST /v1/publish`, `{"topic": "bench/pub",
"payload": <59 bytes>}`), in rounds of 64 connections with one request in flight each (its
replies may come from a task: the rounds wait for them). `--token` adds
`Authorization: Bearer <a token of a user>` (the anonymous caller is then refused).
`--vary`: a publisher whose body length varies, so every request has another
`Content-Length` (bodies of 33 to 332 bytes in turn: 300 lengths, more than the listener
keeps heads for, http/lane_replay.py `LANE_HEADS`; raw form only). `--topics`: a publisher
whose topic changes on every request (300 topics in turn, raw form only), so its heads
never repeat.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from typing import Any

from micro_connect import MemoryTransport
from pushwire.config import Settings
from pushwire.server import PushwireServer

BODY = b"PWTS0" + b"x" * 59
REQUEST = (
    b"POST /v1/publish/bench/pub HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
)

JSON_BODY = b'{"topic":"bench/pub","payload":"PWTS0%b"}' % (b"x" * 54)
JSON_REQUEST = (
    b"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(JSON_BODY), JSON_BODY)
)


def varying(request: bytes) -> list[bytes]:
    """`request` (the raw form) with bodies of 33 to 332 bytes: 300 Content-Lengths."""
    head, _, _ = request.partition(b"\r\n\r\n")
    length = b"Content-Length: %d" % len(BODY)
    return [
        head.replace(length, b"Content-Length: %d" % size) + b"\r\n\r\nPWTS0" + b"x" * (size - 5)
        for size in range(33, 333)
    ]


def topics(request: bytes) -> list[bytes]:
    """`request` (the raw form) to 300 topics, bench/pub000 to bench/pub299."""
    return [request.replace(b"/bench/pub ", b"/bench/pub%03d " % n, 1) for n in range(300)]


class CountingTransport(MemoryTransport):
    """Counts the replies (a 201 each) and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.created = 0
        self.other: list[bytes] = []

    def write(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 201 "):
            self.created += 1
        else:
            self.other.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return super().get_extra_info(name, default)


def with_token(request: bytes, token: str) -> bytes:
    """`request` with an `Authorization: Bearer` header."""
    return request.replace(b"\r\n\r\n", b"\r\nAuthorization: Bearer %b\r\n\r\n" % token.encode(), 1)


async def measure(
    n: int, sqlite: bool, profile: bool, request: bytes, token: bool, vary: str
) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.model_validate(
            {
                "memory": not sqlite,
                "data_dir": data_dir,
                "bind": "127.0.0.1",
                "mqtt_port": 0,
                "http_port": 0,
                "sys_interval": 0,
                "connection_rate_per_ip": 0,
                "max_connections_per_ip": 0,
                "publish_rate_per_client": 0,
            }
        )
        server = PushwireServer(settings)
        await server.start()
        try:
            http = server._http
            assert http is not None
            if token:  # a user with a token: anonymous publishing is then refused
                await server.auth.add_user("bench", "a long enough password")
                new = await server.auth.create_token("bench")
                request = with_token(request, new.token)
            requests = (
                varying(request)
                if vary == "length"
                else topics(request)
                if vary == "topic"
                else [request]
            )
            proto = http.protocol()
            transport = CountingTransport()
            proto.connection_made(transport)  # type: ignore[arg-type]
            for i in range(100):  # warm the caches (caller, hot URL, topic)
                proto.data_received(requests[i % len(requests)])
                while proto.pipeline:
                    await asyncio.sleep(0)
            deadline = time.monotonic() + 30
            while transport.created < 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # SQLite: the replies wait for their commits
            assert transport.created == 100, transport.other[:1]
            gc.collect()
            gc.freeze()  # as `pushwire serve` does after start-up (pushwire/heap.py)
            prof = cProfile.Profile() if profile else None
            start = time.process_time()
            if prof is not None:
                prof.enable()
            feed = proto.data_received
            batched = sqlite or not request.startswith(b"POST /v1/publish/")
            if batched:
                # a commit per publish would measure the disk: let replies wait in batches
                # of 64 requests (64 connections, one in flight each)
                protos = [http.protocol() for _ in range(64)]
                for p in protos:
                    p.connection_made(CountingTransport())  # type: ignore[arg-type]
                done = 0
                while done < n:
                    for p in protos:
                        p.data_received(request)
                    done += len(protos)
                    while any(p.pipeline for p in protos):
                        await asyncio.sleep(0)
                n = done
            elif vary:
                count = len(requests)
                for i in range(n):
                    feed(requests[i % count])
            else:
                for _ in range(n):
                    feed(request)
            elapsed = time.process_time() - start
            if prof is not None:
                prof.disable()
                pstats.Stats(prof).sort_stats(
                    *(
                        sys.argv[sys.argv.index("--sort") + 1].split(",")
                        if "--sort" in sys.argv
                        else ["tottime"]
                    )
                ).print_stats(25)
            if not batched:
                assert transport.created == n + 100, (transport.created, transport.other[:1])
            return elapsed / n * 1e6
        finally:
            await server.stop()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    sqlite = "--sqlite" in sys.argv
    profile = "--profile" in sys.argv
    request = JSON_REQUEST if "--json" in sys.argv else REQUEST
    token = "--token" in sys.argv
    vary = "length" if "--vary" in sys.argv else "topic" if "--topics" in sys.argv else ""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    results = [
        asyncio.run(measure(n, sqlite, profile, request, token, vary))
        for _ in range(1 if profile else 3)
    ]
    print(
        f"{'sqlite' if sqlite else 'memory'}{' json' if request is JSON_REQUEST else ''}"
        f"{' token' if token else ''}{' vary ' + vary if vary else ''}: "
        "CPU per publish, us: "
        + ", ".join(f"{r:.2f}" for r in results)
        + f" (best {min(results):.2f}; N={n})"
    )


if __name__ == "__main__":
    main()
