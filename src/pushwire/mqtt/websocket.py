"""MQTT over WebSocket (`/mqtt`, subprotocol `mqtt`): the same broker as TCP.

The WebSocket carries the MQTT byte stream in binary frames (MQTT 3.1.1 section 6, MQTT 5.0
section 6). A small transport adapter lets the unchanged `MQTTServerProtocol` run on top of
a Starlette WebSocket, so every rule of the TCP listener holds here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from pushwire.mqtt.broker import MQTTBroker
from pushwire.mqtt.protocol import WRITE_BUFFER_HIGH, MQTTServerProtocol
from pushwire.tls import scope_certificate_name

log = logging.getLogger(__name__)

# frames (or bytes) queued for the socket before the connection counts as congested (QoS 0
# dropped, QoS 1/2 wait in the session queue), and the levels at which sending resumes
HIGH_WATER_FRAMES = 256
LOW_WATER_FRAMES = 64
HIGH_WATER_BYTES = WRITE_BUFFER_HIGH
LOW_WATER_BYTES = WRITE_BUFFER_HIGH // 4


class WebSocketTransport:
    """The part of asyncio.Transport that MQTTServerProtocol uses, over a WebSocket."""

    def __init__(self, ws: WebSocket, protocol: MQTTServerProtocol) -> None:
        self._ws = ws
        self._protocol = protocol
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._bytes = 0  # bytes in _frames
        self._closing = False
        self._paused = False
        self.reading = asyncio.Event()
        self.reading.set()

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._frames.put_nowait(data)
        self._bytes += len(data)
        if not self._paused and (
            self._frames.qsize() > HIGH_WATER_FRAMES or self._bytes > HIGH_WATER_BYTES
        ):
            self._paused = True
            self._protocol.pause_writing()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._frames.put_nowait(None)
        self.reading.set()  # a reader waiting on a paused read must see the close

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None  # fixed: HIGH_WATER_FRAMES / HIGH_WATER_BYTES

    def pause_reading(self) -> None:
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    def abort(self) -> None:
        self.close()
        self.reading.set()  # let the reader loop see the close

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        client = self._ws.client
        if name == "peername" and client is not None:
            return (client.host, client.port)
        if name == "peercert" and client is not None:
            # the TLS layer is the HTTP listener's: it puts the verified name into the scope
            cn = scope_certificate_name(self._ws.scope)
            return {"subject": ((("commonName", cn),),)} if cn is not None else default
        return default

    async def run_writer(self) -> None:
        """Send queued frames in order until close; then close the WebSocket."""
        try:
            while True:
                data = await self._frames.get()
                if data is None:
                    break
                await self._ws.send_bytes(data)
                self._bytes -= len(data)
                if (
                    self._paused
                    and self._frames.qsize() < LOW_WATER_FRAMES
                    and self._bytes < LOW_WATER_BYTES
                ):
                    self._paused = False
                    self._protocol.resume_writing()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer went away; the reader notices too
        finally:
            self._closing = True
            with contextlib.suppress(Exception):
                await self._ws.close()


def mount_mqtt_websocket(app: FastAPI, broker: MQTTBroker, path: str = "/mqtt") -> None:
    async def mqtt_over_websocket(ws: WebSocket) -> None:
        offered = ws.scope.get("subprotocols") or []
        await ws.accept(subprotocol="mqtt" if "mqtt" in offered else None)
        protocol = MQTTServerProtocol(broker)
        transport = WebSocketTransport(ws, protocol)
        protocol.connection_made(cast(asyncio.Transport, transport))
        writer = asyncio.create_task(transport.run_writer())
        try:
            while not transport.is_closing():
                await transport.reading.wait()
                if transport.is_closing():
                    break
                event = await ws.receive()
                if event["type"] == "websocket.disconnect":
                    break
                data = event.get("bytes")
                if data is None:
                    # MQTT-6.0.0-1: text frames are a protocol violation
                    log.info("closing MQTT over WebSocket: text frame received")
                    break
                protocol.data_received(data)
        finally:
            protocol.connection_lost(None)
            transport.close()
            await writer

    app.add_api_websocket_route(path, mqtt_over_websocket)
