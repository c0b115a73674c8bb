"""The HTTP benchmark's own parsing: payload stamps, response heads, status lines, cursors,
server counters and the generated nginx.conf, on hand-made bytes (no sockets)."""

from __future__ import annotations

import math
import socket
import struct
from pathlib import Path

import pytest

from pushwire.bench.http import (
    STAMP_LEN,
    ClientReport,
    HttpProtocolError,
    StatusCounter,
    delivery_percentile,
    find_stamps,
    kernel_rx_ns,
    longpoll_first_request,
    longpoll_next_request,
    nchan_status_subscribers,
    parse_response_head,
    per_message,
    per_message_note,
    prometheus_value,
    publish_head,
    sse_request,
    stamp_payload,
    ws_client_frame,
    ws_request,
    ws_subscribe_frame,
)
from pushwire.bench.nchan import nchan_conf

SENT = 1_795_732_009_007_000_123


def test_stamp_payload_is_padded_ascii() -> None:
    payload = stamp_payload(SENT, True, 64)
    assert len(payload) == 64
    assert payload.startswith(b"PWTSw1795732009007000123")
    assert payload.decode("ascii")  # reaches pushwire's JSON as "payload", not base64
    assert len(stamp_payload(5, False, 10)) == STAMP_LEN  # never shorter than the stamp
    assert stamp_payload(5, False, 64)[4:5] == b"o"


def test_find_stamps_in_sse_events_and_json() -> None:
    stream = (
        b': pushwire abc:0\n\nid: abc:1\ndata: {"payload":"'
        + stamp_payload(SENT, True, 64)
        + b'"}\n\n\r\n9c\r\nid: abc:2\ndata: '
        + stamp_payload(SENT + 1, False, 64)
        + b"\n\nid: abc:3\ndata: "
        + stamp_payload(SENT + 2, True, 64)
        + b"\n\n"
    )
    sent, outside, keep = find_stamps(stream)
    assert sent == [SENT, SENT + 2]
    assert outside == 1
    assert find_stamps(stream[keep:]) == ([], 0, len(stream[keep:]) - 3)


@pytest.mark.parametrize("cut", range(1, 2 * 64 + 20))
def test_find_stamps_across_reads(cut: int) -> None:
    """Whatever read boundary splits a stamp, it is counted exactly once."""
    stream = b"data: " + stamp_payload(SENT, True, 64) + b"\n\ndata: "
    stream += stamp_payload(SENT + 7, True, 64) + b"\n\n"
    first, second = stream[:cut], stream[cut:]
    sent, _, keep = find_stamps(first)
    more, _, _ = find_stamps(first[keep:] + second)
    assert sent + more == [SENT, SENT + 7]


def test_find_stamps_inside_a_body_only() -> None:
    body = stamp_payload(SENT, True, 64)
    buf = b"HEAD" + body + stamp_payload(SENT + 1, True, 64)
    sent, _, _ = find_stamps(buf, 4, 4 + len(body))
    assert sent == [SENT]


def test_find_stamps_ignores_a_marker_without_digits() -> None:
    sent, outside, _ = find_stamps(b"PWTSwnot-digits-at-all----" + stamp_payload(SENT, True, 30))
    assert (sent, outside) == ([SENT], 0)


PUSHWIRE_LONGPOLL = (
    b"HTTP/1.1 200 OK\r\ndate: x\r\nserver: uvicorn\r\n"
    b'etag: "24cb07cadd97:3"\r\npushwire-cursor: 24cb07cadd97:3\r\n'
    b"content-length: 12\r\ncontent-type: application/json\r\n\r\n"
    b'{"messages":'
)
NCHAN_LONGPOLL = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 5\r\nLast-Modified: Thu, 26 Nov 2026 22:26:39 GMT\r\n"
    b"Connection: keep-alive\r\nEtag: 2\r\n\r\nhello"
)


def test_parse_response_head() -> None:
    head = parse_response_head(PUSHWIRE_LONGPOLL)
    assert head is not None
    assert head.status == 200
    assert head.content_length == 12 and not head.chunked
    assert PUSHWIRE_LONGPOLL[head.length :] == b'{"messages":'
    assert head.header(b"pushwire-cursor") == b"24cb07cadd97:3"
    assert head.header(b"missing") is None
    nchan = parse_response_head(NCHAN_LONGPOLL)
    assert nchan is not None
    # names are matched case-insensitively; values keep their case
    assert nchan.header(b"last-modified") == b"Thu, 26 Nov 2026 22:26:39 GMT"
    assert nchan.body_length() == 5


def test_parse_response_head_waits_for_the_blank_line() -> None:
    assert parse_response_head(PUSHWIRE_LONGPOLL[:40]) is None
    two = NCHAN_LONGPOLL + PUSHWIRE_LONGPOLL
    first = parse_response_head(two)
    assert first is not None
    second = parse_response_head(two, first.length + first.body_length())
    assert second is not None and second.header(b"etag") == b'"24cb07cadd97:3"'


def test_parse_response_head_chunked_and_bodiless() -> None:
    sse = parse_response_head(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n19\r\n: pushwire"
    )
    assert sse is not None and sse.chunked and sse.content_length is None
    with pytest.raises(HttpProtocolError):
        sse.body_length()
    not_modified = parse_response_head(b"HTTP/1.1 304 Not Modified\r\nEtag: 1\r\n\r\n")
    assert not_modified is not None and not_modified.body_length() == 0


@pytest.mark.parametrize(
    "garbage", [b"HTTP/2 200\r\n\r\n", b"SSH-2.0-x\r\n\r\n", b"HTTP/1.1 2x\r\n\r\n"]
)
def test_parse_response_head_refuses_what_is_not_http11(garbage: bytes) -> None:
    with pytest.raises(HttpProtocolError):
        parse_response_head(garbage)


def test_longpoll_requests_carry_the_cursor() -> None:
    first = longpoll_first_request("pushwire", "lat")
    assert first.startswith(b"GET /v1/longpoll/bench/lat?timeout=") and b"since" not in first
    head = parse_response_head(PUSHWIRE_LONGPOLL)
    assert head is not None
    nxt = longpoll_next_request("pushwire", "lat", head, first)
    assert nxt.startswith(
        b"GET /v1/longpoll/bench/lat?timeout=300&since=24cb07cadd97:3 HTTP/1.1\r\n"
    )
    assert nxt.endswith(b"\r\n\r\n")

    nchan_first = longpoll_first_request("nchan", "lat")
    assert nchan_first == b"GET /lp/lat HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    head = parse_response_head(NCHAN_LONGPOLL)
    assert head is not None
    assert longpoll_next_request("nchan", "lat", head, nchan_first) == (
        b"GET /lp/lat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"If-Modified-Since: Thu, 26 Nov 2026 22:26:39 GMT\r\nIf-None-Match: 2\r\n\r\n"
    )


def test_an_error_reply_keeps_the_previous_cursor() -> None:
    error = parse_response_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
    assert error is not None
    assert longpoll_next_request("pushwire", "lat", error, b"PREVIOUS") == b"PREVIOUS"
    assert longpoll_next_request("nchan", "lat", error, b"PREVIOUS") == b"PREVIOUS"


def test_requests() -> None:
    head = publish_head("nchan", "pub", 64)
    assert head.startswith(b"POST /pub/pub HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 64\r\n" in head and head.endswith(b"\r\n\r\n")
    assert publish_head("pushwire", "pub", 7).startswith(b"POST /v1/publish/bench/pub ")
    # nchan answers an SSE request without this Accept header with 403
    assert b"\r\nAccept: text/event-stream\r\n" in sse_request("nchan", "lat")


def test_websocket_requests_and_frames() -> None:
    pushwire = ws_request("pushwire", "lat")
    assert pushwire.startswith(b"GET /v1/ws HTTP/1.1\r\n")
    assert b"\r\nUpgrade: websocket\r\n" in pushwire
    assert b"\r\nSec-WebSocket-Protocol: pushwire.v1\r\n" in pushwire
    assert pushwire.endswith(b"\r\n\r\n")
    assert ws_request("nchan", "lat").startswith(b"GET /ws/lat HTTP/1.1\r\n")
    frame = ws_subscribe_frame("lat")
    # FIN + text, masked, 7-bit length, the zero mask key, then the JSON as it is
    text = b'{"type":"subscribe","sub":"b","filter":"bench/lat"}'
    assert frame == bytes([0x81, 0x80 | len(text)]) + b"\0\0\0\0" + text
    long = ws_client_frame(b"x" * 300)
    assert long[:4] == bytes([0x81, 0xFE, 0x01, 0x2C]) and len(long) == 4 + 4 + 300


def test_status_counter_across_reads() -> None:
    replies = (b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}") * 3
    replies += b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
    for cut in range(1, len(replies)):
        counter = StatusCounter()
        seen = counter.feed(replies[:cut]) + counter.feed(replies[cut:])
        assert (seen, counter.ok, counter.other) == (4, 3, 1), cut


def test_kernel_rx_ns() -> None:
    stamp = struct.pack("qq", 1_795_732_009, 7)
    assert kernel_rx_ns([(socket.SOL_SOCKET, 35, stamp)]) == 1_795_732_009_000_000_007
    assert kernel_rx_ns([(socket.SOL_SOCKET, 29, stamp)]) is None
    assert kernel_rx_ns([]) is None


def test_server_counters() -> None:
    metrics = (
        "# TYPE pushwire_log_listeners gauge\npushwire_log_listeners 10020\n"
        'pushwire_open_connections{transport="sse"} 5.0\n'
    )
    assert prometheus_value(metrics, "pushwire_log_listeners") == 10020
    assert prometheus_value(metrics, "pushwire_open_connections") == 5
    assert prometheus_value(metrics, "pushwire_log") is None
    status = "total published messages: 2\nchannels: 1\nsubscribers: 10020\nnchan version: 1.3.6\n"
    assert nchan_status_subscribers(status) == 10020
    assert nchan_status_subscribers("channels: 1\n") is None


def test_nchan_conf(tmp_path: Path) -> None:
    module = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
    conf = nchan_conf(18999, tmp_path, module, 20000, "user nobody nogroup;\n")
    assert conf.startswith(f"load_module {module};\n")
    for line in (
        "daemon off;",
        "master_process on;",
        "worker_rlimit_nofile 20000;",
        "user nobody nogroup;",
        f"pid {tmp_path / 'nginx.pid'};",
        "listen 127.0.0.1:18999 backlog=4096;",
        "nchan_subscriber longpoll;",
        "nchan_subscriber eventsource;",
        "nchan_subscriber websocket;",
        "nchan_message_buffer_length 1000;",
    ):
        assert line in conf, line
    assert "worker_processes 1;" in conf
    assert conf.count("nchan_channel_id $1;") == 4
    assert conf.count("{") == conf.count("}")


def test_delivery_percentiles_count_what_never_came() -> None:
    delivered = sorted([5, 1, 3, 2, 4])
    assert delivery_percentile(delivered, 5, 0.5) == 3
    assert delivery_percentile(delivered, 5, 0.99) == 5
    # 5 of 10 arrived: the median is the last that did, p99 is among the missing
    assert delivery_percentile(delivered, 10, 0.5) == 5
    assert delivery_percentile(delivered, 10, 0.99) == math.inf
    assert delivery_percentile([], 10, 0.5) == math.inf
    assert math.isnan(delivery_percentile([], 0, 0.5))


def test_per_wave_percentiles_group_deliveries_by_their_message() -> None:
    """A p99 over all waves is the slowest wave's: the detail line shows each wave's own."""
    ms = 1_000_000
    # two processes' deliveries of two messages (stamps 100 and 200), interleaved
    a = ClientReport("sub0", "sse-sub", 2)
    a.sent_ns, a.latencies_ns = [200, 100, 100], [90 * ms, 10 * ms, 30 * ms]
    b = ClientReport("sub1", "sse-sub", 2)
    b.sent_ns, b.latencies_ns = [100, 200, 200], [20 * ms, 50 * ms, 70 * ms]
    assert per_message([a, b]) == [(20.0, 30.0), (70.0, 90.0)]  # in the order sent
    assert per_message_note([a, b]) == "; per wave p50/p99 ms: 20/30 70/90"
    assert per_message_note([ClientReport("sub0", "sse-sub", 1)]) == ""
