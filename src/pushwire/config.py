"""Server settings: command-line flags > environment (PUSHWIRE_*) > TOML file > defaults.

Every limit is a named setting (as mosquitto does), never a magic number in the code.
`pushwire serve --help` is generated from the fields below, so their descriptions are the
documentation of each flag.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class LogRetentionRule(BaseModel):
    """Retention of the topics matching `filter` (first matching rule wins)."""

    model_config = {"extra": "forbid"}

    filter: str = Field(description="MQTT topic filter (+ and # wildcards)")
    max_messages: int | None = Field(None, ge=0, description="messages kept per topic")
    max_age: float | None = Field(None, ge=0, description="seconds a message is kept (0: no limit)")


def generated_node_id() -> str:
    """A node id nobody else has: the host, this process, and a few random bytes (a pid
    alone repeats across hosts and containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUSHWIRE_", extra="forbid")

    # which TOML file to read; set by --config / PUSHWIRE_CONFIG before construction
    toml_file: ClassVar[Path | None] = None

    bind: str = Field("127.0.0.1", description="address every listener binds to")
    mqtt_port: int = Field(1883, ge=0, le=65535, description="MQTT over TCP port (0: any free)")
    http_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="HTTP port: publish, poll, long-poll, SSE, the JSON WebSocket (/v1/ws), "
        "MQTT over WebSocket (/mqtt), admin API, /metrics, /docs (0: any free port)",
    )
    data_dir: Path = Field(Path("pushwire-data"), description="where the SQLite store lives")
    memory: bool = Field(
        False,
        description="keep everything in memory (nothing survives); shorthand for --engine memory",
    )
    # -- engine and scale-out (docs/cluster.md) ----------------------------------------
    engine: Literal["sqlite", "memory", "redis"] = Field(
        "sqlite",
        description="where state lives: sqlite (embedded, one process, in data_dir), memory "
        "(nothing survives; same as --memory) or redis (shared by many processes and nodes, "
        "at redis_url; needed for workers > 1)",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis server of engine=redis (redis://[user:password@]host:port/db, "
        "rediss:// for TLS)",
    )
    redis_fanout_max: int = Field(
        10_000,
        ge=100,
        description="engine=redis: entries kept in the cluster fan-out stream (approximate "
        "MAXLEN; one entry per publish batch, up to 2048 messages); a node that falls further "
        "behind than this misses messages (logged, counted)",
    )
    redis_max_pending: int = Field(
        16384,
        ge=1,
        description="engine=redis: published messages waiting for Redis' answer before "
        "publishers are held (MQTT stops reading them, HTTP/WebSocket publishes wait) until "
        "half are answered; bounds memory and the delay a message spends before fan-out",
    )
    redis_log_memory: Literal["listened", "routed"] = Field(
        "listened",
        description="engine=redis: which messages a node's message log keeps in memory: "
        "'listened' only those a live HTTP reader (long-poll, SSE, WebSocket) on the node "
        "listens for, 'routed' also those routed to its MQTT sessions; the others are kept "
        "as id, time and size, and a poll that reaches them reads them from Redis (less CPU "
        "and memory per message on every node, a Redis read per such poll; docs/cluster.md)",
    )
    redis_timeout: float = Field(
        5.0,
        gt=0,
        description="engine=redis: seconds to wait for Redis to answer a command before the "
        "publishes it carried are refused (HTTP 503, MQTT: no ack, connection closed)",
    )
    redis_max_connections: int = Field(
        64,
        ge=2,
        description="engine=redis: connections each of a node's Redis clients (publishing, "
        "sessions) opens at most; a command beyond them waits for one to come free, up to "
        "redis_timeout (a burst of CONNECTs claiming client ids queues here)",
    )
    redis_reconnect_max: float = Field(
        2.0,
        gt=0,
        description="engine=redis: longest pause between reconnection attempts of the fan-out "
        "reader while Redis is unreachable (doubling from 50 ms)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=1024,
        description="server processes sharing every listening port (SO_REUSEPORT), started "
        "and restarted by a supervisor process; above 1 needs engine=redis",
    )
    node_id: str = Field(
        "",
        max_length=200,
        description="this node's name in a cluster, distinct on every node (empty: "
        "hostname-pid-random, generated at start); worker i of --workers gets <node_id>-w<i>",
    )
    cluster_heartbeat_interval: float = Field(
        1.0,
        gt=0,
        description="engine=redis: seconds between this node's heartbeats (its figures for "
        "the cluster totals are refreshed as often), and between looks for sessions of "
        "nodes that stopped",
    )
    cluster_node_timeout: float = Field(
        5.0,
        gt=0,
        description="engine=redis: a node whose heartbeat is older than this is dead: its "
        "persistent sessions are adopted by a live node, its clients may connect elsewhere "
        "(must be longer than cluster_heartbeat_interval)",
    )
    cluster_takeover_timeout: float = Field(
        6.0,
        gt=0,
        description="engine=redis: seconds a CONNECT waits for the node holding its client "
        "id to hand the session over (longer than cluster_node_timeout, so a dead holder "
        "is waited out); after that the CONNECT is refused (server unavailable)",
    )
    workers_allow_unshared_engine: bool = Field(
        False,
        description="TEST ONLY: let workers > 1 run on engine memory, each worker with its "
        "own private state (clients of different workers do not see each other); used to "
        "test the supervisor before the Redis engine exists. Never in production",
    )
    workers_restart_backoff: float = Field(
        0.5,
        gt=0,
        description="seconds the supervisor waits before restarting a worker that died; "
        "doubles with each restart of that worker within workers_restart_window",
    )
    workers_max_restarts: int = Field(
        5,
        ge=0,
        description="restarts of one worker within workers_restart_window after which the "
        "supervisor gives up: it stops every worker and exits with status 1",
    )
    workers_restart_window: float = Field(
        60.0,
        gt=0,
        description="seconds over which a worker's restarts are counted (workers_max_restarts)",
    )
    workers_stop_timeout: float = Field(
        15.0,
        gt=0,
        description="seconds workers have to stop gracefully after SIGTERM/SIGINT before "
        "the supervisor kills them (SIGKILL)",
    )
    durability: bool = Field(
        True,
        description="acknowledge QoS 1/2 messages for persistent sessions only once they are "
        "on disk (SQLite synchronous=FULL)",
    )
    store_max_pending_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="payload bytes waiting to be written to the SQLite store before "
        "publishers are held (MQTT stops reading them, HTTP/WebSocket publishes wait; at "
        "most 0.5 s per episode) until half is written (0: no limit)",
    )
    max_packet_size: int = Field(
        1_048_576, ge=64, le=268_435_460, description="largest MQTT packet accepted, bytes"
    )
    max_inflight: int = Field(
        20, ge=1, le=65535, description="unacknowledged QoS 1/2 messages per client"
    )
    max_queued_messages: int = Field(
        1000,
        ge=0,
        description="QoS 1/2 messages queued per session beyond the inflight window, for a "
        "queue held in memory: clean sessions, and every session with --memory (persistent "
        "sessions on the SQLite store: max_persistent_queued_messages; docs/queues.md)",
    )
    max_queued_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="bytes of QoS 1/2 messages one in-memory queue may hold queued plus "
        "inflight (payload + topic + properties + ~256 per message; one message always fits; "
        "beyond: refused and counted like max_queued_messages; 0: no byte limit)",
    )
    max_persistent_queued_messages: int = Field(
        50_000,
        ge=0,
        description="QoS 1/2 messages a persistent session's queue may hold on the SQLite "
        "store (memory holds queue_memory_window of them): a phone offline for a weekend "
        "at 10 messages a minute needs 36,000 (docs/queues.md)",
    )
    max_persistent_queued_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="bytes of QoS 1/2 messages a persistent session's queue may hold on the "
        "SQLite store, counted as for max_queued_bytes (0: no byte limit)",
    )
    queue_memory_window: int = Field(
        500,
        ge=1,
        description="queued messages of a persistent session (SQLite store) kept in memory; "
        "the rest waits on disk and is read back in batches as the queue drains",
    )
    backpressure_queue_messages: int = Field(
        100,
        ge=0,
        description="queued QoS 1/2 messages at which a subscriber that keeps up holds its "
        "publishers back until half of them are delivered (a queued message is delay for every "
        "one behind it: 1000 queued at 50,000 msg/s is 20 ms); 0: only when the queue is full",
    )
    backpressure_publish_burst: int = Field(
        32,
        ge=1,
        description="QoS 1 PUBLISHes of one read still routed once backpressure is on, "
        "before their publisher is held: its window then refills in one write, where holding "
        "it mid-read would split every later read of it in two; each held publisher adds at "
        "most this many to a queue past backpressure_queue_messages, and none once a queue is "
        "at its bound (docs/queues.md); 1: held right after the first",
    )
    backpressure_progress_window: float = Field(
        1.0,
        gt=0,
        description="seconds since a QoS 1/2 subscriber's last acknowledgement during which "
        "it counts as keeping up: when its queue is full, publishers are held back instead "
        "of its messages being dropped",
    )
    max_connections: int = Field(100_000, ge=1, description="concurrent MQTT connections")
    max_keepalive: int = Field(
        65535, ge=0, le=65535, description="largest keepalive granted, seconds (MQTT 5)"
    )
    receive_maximum: int = Field(
        65535,
        ge=1,
        le=65535,
        description="QoS 1/2 publishes an MQTT 5 client may have unacknowledged towards the "
        "server (sent in CONNACK; more gets DISCONNECT 0x93)",
    )
    topic_alias_maximum: int = Field(
        64,
        ge=0,
        le=65535,
        description="topic aliases an MQTT 5 client may define towards the server (CONNACK)",
    )
    outgoing_topic_aliases: int = Field(
        64,
        ge=0,
        le=65535,
        description="topic aliases the server assigns per MQTT 5 connection to topics it "
        "sends, up to the client's Topic Alias Maximum (least recently used is reassigned; "
        "0: off)",
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="seconds a new connection has to send CONNECT"
    )
    sys_interval: float = Field(
        10.0, ge=0, description="seconds between $SYS/broker updates (0: off)"
    )
    max_subscriptions_per_client: int = Field(
        1000,
        ge=1,
        description="subscriptions one MQTT session may hold (overlapping filters cost each "
        "publish to a matching topic one trie step apiece)",
    )
    route_cache_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description="approximate bytes of per-topic delivery routes cached (topic -> the "
        "sessions it reaches, overlapping subscriptions folded); least recently used routes "
        "leave first (0: no cache, every publish matches the subscription tree)",
    )
    retained_slice: int = Field(
        32,
        ge=1,
        description="retained-store nodes one new subscription's retained delivery visits per "
        "event-loop turn: a subscriber with a huge retained backlog gets it in slices and "
        "other clients are served between them",
    )
    fanout_deliveries_per_turn: int = Field(
        100_000,
        ge=1,
        description="deliveries (subscribers reached) one MQTT connection's publishes, or one "
        "HTTP batch publish, may cause in one event-loop turn; past it, the rest of what it "
        "sent waits for the next turn (in order, reading from it paused) so the writes of the "
        "fan-out go out and other clients are served in between",
    )
    mqtt_read_bytes_per_turn: int = Field(
        256 * 1024,
        ge=0,
        description="MQTT bytes decoded in one event-loop turn across all connections; past "
        "it, a read is kept undecoded for a later turn (reading from that client paused, "
        "the clients deferred in one turn first in the next, order kept) so that thousands "
        "of publishers blasting at once cannot starve timers, the Redis publish batcher and "
        "other clients' writes (0: no cap)",
    )
    max_topic_levels: int = Field(
        128,
        ge=1,
        le=32768,
        description="levels ('/'-separated parts) a topic name or filter may have, on every "
        "transport: MQTT 5 gets 0x90/0x8F, MQTT 3.1.1 is closed (SUBACK 0x80 for a filter), "
        "HTTP gets 400 bad_topic",
    )
    slow_consumer_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a client's send buffer may stay full before it is disconnected "
        "(meanwhile QoS 0 to it is dropped and counted, QoS 1/2 waits in its bounded queue)",
    )
    connection_rate_per_ip: float = Field(
        200.0,
        ge=0,
        description="new connections per second from one IP, MQTT and HTTP together, refilling "
        "a bucket of connection_burst_per_ip (0: no limit)",
    )
    connection_burst_per_ip: float = Field(
        2000.0,
        ge=0,
        description="connections one IP may open at once before connection_rate_per_ip "
        "applies: many devices behind one carrier-grade NAT address reconnect together after a "
        "network blip (burst + 60 x rate get in within a minute: 14,000 by default); 0: twice "
        "the rate",
    )
    connect_rate_per_client_id: float = Field(
        1.0,
        ge=0,
        description="MQTT CONNECTs per second one client id may make once its burst is used "
        "(a device reconnecting in a loop): more are refused with CONNACK 0x9F Connection rate "
        "exceeded (MQTT 3.1.1: 3 Server unavailable); counted after authentication; 0: no limit",
    )
    connect_burst_per_client_id: float = Field(
        20.0,
        ge=0,
        description="CONNECTs one client id may make back to back before "
        "connect_rate_per_client_id applies; 0: twice the rate",
    )
    max_connections_per_ip: int = Field(
        0, ge=0, description="concurrent MQTT and HTTP connections from one IP (0: no limit)"
    )
    publish_rate_per_client: float = Field(
        0.0,
        ge=0,
        description="messages per second one client may publish: MQTT clients are throttled "
        "(reading pauses), HTTP/WebSocket callers get 429 (burst: twice that; 0: no limit)",
    )
    anonymous: Literal["auto", "on", "off"] = Field(
        "auto",
        description="anonymous clients: auto (from loopback only, and only while no user "
        "exists), on, or off",
    )
    acl: list[dict[str, Any]] = Field(
        default_factory=list,
        description="topic ACL rules added to the store at start ([[acl]] tables in TOML: "
        "user/role/anonymous/all, access allow|deny, permission read|write|readwrite, filter)",
    )
    sys_readable: bool = Field(
        False,
        description="let every authenticated user read $SYS/# (default: the admin role only; "
        "anonymous clients never)",
    )
    login_failures_burst: int = Field(
        10,
        ge=1,
        description="failed logins one IP may make for one username before that username is "
        "rate limited from that IP (others behind the same proxy are not)",
    )
    login_failures_address_burst: int = Field(
        100,
        ge=1,
        description="failed logins one IP may make over all usernames (password spraying, "
        "argon2 work) before every login from it is rate limited",
    )
    login_failures_window: float = Field(
        60.0, gt=0, description="seconds over which the failed-login allowance refills"
    )
    scram_iterations: int = Field(
        4096,
        ge=4096,
        le=10_000_000,
        description="PBKDF2 iterations of the SCRAM-SHA-256 verifier stored when a password is "
        "set (MQTT 5 enhanced authentication). Each client login pays them (the server pays "
        "a few HMACs); 4096 is RFC 7677's minimum. Applies to passwords set afterwards; "
        "`pushwire user` reads PUSHWIRE_SCRAM_ITERATIONS",
    )
    auth_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds an MQTT 5 client has to answer the server's AUTH challenge "
        "(SCRAM) at CONNECT or re-authentication before the connection is closed",
    )
    log_level: str = Field("info", description="debug, info, warning or error")
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) for TLS; enables MQTT over TLS"
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_ca: Path | None = Field(
        None, description="PEM CA bundle that client certificates must chain to"
    )
    tls_client_auth: Literal["none", "optional", "required"] = Field(
        "none",
        description="ask for client certificates; a valid one authenticates its CN as username",
    )
    mqtt_tls_port: int = Field(
        8883, ge=0, le=65535, description="MQTT over TLS port, used when tls_cert is set"
    )
    http_tls: bool = Field(False, description="serve HTTPS (and WSS) on http_port with tls_cert")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [],
        description="web origins trusted to use the server from a browser, comma-separated "
        "(e.g. https://app.example.com; * for any): they get CORS headers, and may open "
        "WebSockets and POST/PUT/DELETE, which other origins (but the server's own) may not",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="reverse proxies trusted to name the client in X-Forwarded-For (and the "
        "scheme in X-Forwarded-Proto), comma-separated addresses or networks (10.0.0.0/8; * "
        "for any peer): their requests count as the named client's for auth (anonymous "
        "loopback), rate limits and logs; the headers of any other peer are ignored",
    )

    # -- message log and HTTP transports (core/log.py, http/) --------------------------
    log_max_messages: int = Field(
        1000, ge=0, description="messages kept per topic in the message log (since= replay)"
    )
    log_max_age: float = Field(
        43200.0, ge=0, description="seconds a message stays in the message log (0: no limit)"
    )
    log_retention: list[LogRetentionRule] = Field(
        [],
        description="per-pattern log retention, first match wins: a JSON list of "
        '{"filter": "a/#", "max_messages": 10, "max_age": 60}',
    )
    log_memory_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="bytes of message-log entries held in memory, all topics (payload + "
        "topic + properties + ~256 per message); older entries stay on disk only (SQLite, "
        "read back when a reader reaches them) or, with --memory, are evicted (readers "
        "behind them get a gap); 0: no byte limit",
    )
    log_topic_memory_bytes: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description="bytes of message-log entries held in memory for one topic (as "
        "log_memory_bytes; 0: no byte limit)",
    )
    log_sweep_interval: float = Field(
        30.0, gt=0, description="seconds between age-eviction sweeps of the message log"
    )
    http_max_payload: int = Field(
        1_048_576, ge=1, description="largest HTTP/WebSocket publish payload, bytes (413 above)"
    )
    http_header_timeout: float = Field(
        10.0,
        gt=0,
        description="seconds an HTTP client has to send a complete request head (slowloris "
        "guard: 408 and close), and a JSON WebSocket opened without credentials to send "
        "its auth frame",
    )
    http_max_request_line: int = Field(
        8192,
        ge=64,
        description="longest HTTP request line (method, URL with query, version), bytes: "
        "414 and close above",
    )
    http_max_head: int = Field(
        16384,
        ge=256,
        description="largest HTTP request head (request line and all headers), bytes, "
        "WebSocket upgrades included: 431 and close above",
    )
    ws_max_message: int | None = Field(
        None,
        ge=125,
        description="largest WebSocket message accepted, bytes, on /v1/ws and /mqtt (close "
        "1009 above); default: room for the largest publish, 4 x http_max_payload + 64 KiB, "
        "or max_packet_size, whichever is larger",
    )
    http_max_batch: int = Field(
        1000, ge=1, description="messages in one batch publish (POST /v1/publish [...])"
    )
    json_max_depth: int = Field(
        32,
        ge=2,
        le=512,
        description="deepest nesting of arrays and objects in a JSON request body or "
        "WebSocket frame (400 / bad_request error frame above)",
    )
    poll_limit: int = Field(100, ge=1, description="messages per poll reply when limit= is absent")
    poll_max_limit: int = Field(1000, ge=1, description="largest limit= a poll accepts")
    read_max_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1,
        description="bytes of messages in one poll/long-poll reply or one SSE/WebSocket "
        "backlog page (at least one message; more=true says the rest follows)",
    )
    longpoll_timeout: float = Field(
        30.0, gt=0, description="seconds a long-poll waits when timeout= is absent"
    )
    longpoll_max_timeout: float = Field(
        300.0, gt=0, description="largest timeout= a long-poll accepts, seconds"
    )
    sse_heartbeat: float = Field(
        15.0, gt=0, description="seconds between SSE comment heartbeats on an idle stream"
    )
    ws_heartbeat: float = Field(
        20.0, gt=0, description="seconds between server pings on the JSON WebSocket"
    )
    ws_missed_heartbeats: int = Field(
        3,
        ge=1,
        description="heartbeat periods without a frame from the client before the "
        "server closes a JSON WebSocket (close code 4000)",
    )
    ws_close_timeout: float = Field(
        5.0,
        gt=0,
        description="seconds the server waits for a JSON WebSocket client's close frame "
        "after sending its own, before it closes the TCP connection",
    )
    ws_max_subscriptions: int = Field(
        100, ge=1, description="subscriptions on one JSON WebSocket connection"
    )
    stream_buffer: int = Field(
        10_000,
        ge=1,
        description="messages waiting for a slow SSE/WebSocket client before its "
        "stream is closed (it resumes with its cursor)",
    )
    stream_buffer_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="bytes waiting for a slow SSE/WebSocket client before its stream is "
        "closed, as stream_buffer (0: no byte limit)",
    )
    max_consumers_per_identity: int = Field(
        100,
        ge=1,
        description="named consumers (WebSocket ack subscriptions) one identity may hold: a "
        "user, or an anonymous client's address (too_many_consumers above)",
    )
    consumer_idle_timeout: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="seconds a consumer no subscription uses is kept after its last use "
        "(0: kept until deleted through the admin API)",
    )
    http_max_listeners: int = Field(
        100_000,
        ge=1,
        description="concurrent long-poll waiters + SSE streams + WebSocket "
        "subscriptions (503 above)",
    )
    admin_list_limit: int = Field(
        1000,
        ge=1,
        description="most rows GET /v1/admin/clients, /sessions and /pushes return (the "
        "oldest clients, the deepest queues first; the Pushwire-Total header counts them all)",
    )

    # -- push gateway (gateway/, docs/gateway.md) -------------------------------------
    device_registration_secret: str | None = Field(
        None,
        description="secret a device must send (header Pushwire-Registration-Secret) to "
        "register with POST /v1/devices; unset: registration is open from loopback only",
    )
    push_max_payload: int = Field(
        4096, ge=1, description="largest push body, bytes (413 PayloadTooLarge above)"
    )
    push_max_batch: int = Field(
        1000, ge=1, description="pushes in one batch request (POST /v1/push)"
    )
    push_queue_quota: int = Field(
        100,
        ge=1,
        description="pushes kept per (device, app) while the device is offline; above it the "
        "oldest of the lowest priority is dropped (state dropped)",
    )
    push_max_ttl: float = Field(
        2_592_000.0,
        gt=0,
        description="seconds a push without Pushwire-Expiration is kept for an offline device",
    )
    push_batch_window: float = Field(
        60.0,
        ge=0,
        description="seconds priority 5 and 1 pushes to an online device may be held to go "
        "out together (with the next priority 10 push or at the end of the window)",
    )
    push_rate_per_app: float = Field(
        10_000.0,
        ge=0,
        description="pushes per second one app may send (burst: twice that; above: 429 "
        "TooManyRequests with Retry-After; 0: no limit)",
    )
    push_record_ttl: float = Field(
        86_400.0,
        gt=0,
        description="seconds the record of a finished push stays readable (GET /v1/push/{id})",
    )
    push_content_max: int = Field(
        1_048_576, ge=1, description="largest notify-then-fetch content, bytes (413 above)"
    )
    push_content_ttl: float = Field(
        86_400.0, gt=0, description="seconds stored notify-then-fetch content stays readable"
    )
    push_notice_threshold: int = Field(
        8192,
        ge=256,
        description="a push whose device message would exceed this many bytes, or the MQTT "
        "Maximum Packet Size the device declared, is sent as a notice plus stored content",
    )
    wake_min_interval: float = Field(
        300.0, ge=0, description="seconds between two wake webhooks for one device"
    )
    webhook_timeout: float = Field(
        10.0, gt=0, description="seconds a receipt or wake webhook request may take"
    )
    webhook_max_attempts: int = Field(
        6, ge=1, description="attempts per receipt or wake webhook (exponential backoff)"
    )
    webhook_backoff: float = Field(
        1.0,
        gt=0,
        description="seconds before the first webhook retry; doubles each time, with jitter",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, value: object) -> object:
        # the command line and env vars hand over text: a JSON list, or comma-separated
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("log_retention", mode="before")
    @classmethod
    def _retention_json(cls, value: object) -> object:
        # the command line and plain env vars hand over JSON text
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @model_validator(mode="after")
    def _engine_choice(self) -> Settings:
        # --memory is the shorthand for engine=memory; both spellings end up consistent,
        # so code that asks `settings.memory` and code that asks `settings.engine` agree
        if self.memory:
            if "engine" in self.model_fields_set and self.engine != "memory":
                raise ValueError(f"--memory contradicts --engine {self.engine}")
            self.engine = "memory"
        elif self.engine == "memory":
            self.memory = True
        if self.workers > 1 and self.engine != "redis" and not self.workers_allow_unshared_engine:
            raise ValueError(
                f"--workers {self.workers} needs --engine redis (engine {self.engine} keeps "
                "its state in one process; see docs/cluster.md)"
            )
        return self

    @model_validator(mode="after")
    def _cluster_timeouts(self) -> Settings:
        if self.cluster_node_timeout <= self.cluster_heartbeat_interval:
            raise ValueError("cluster_node_timeout must be longer than cluster_heartbeat_interval")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and explicit overrides."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    Settings.toml_file = config_file
    try:
        return Settings(**overrides)
    finally:
        Settings.toml_file = None
