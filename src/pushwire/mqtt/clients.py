"""The MQTT connections of a broker as `ClientInfo` (for `GET /v1/admin/clients`)."""

from __future__ import annotations

from pushwire.core.clients import ClientInfo
from pushwire.mqtt.broker import MQTTBroker
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.mqtt.websocket import WebSocketTransport


def transport_name(conn: MQTTServerProtocol) -> str:
    transport = conn.transport
    raw: object = transport  # typed asyncio.Transport; MQTT over WebSocket passes its adapter
    if isinstance(raw, WebSocketTransport):
        return "mqtt-ws"
    if transport is not None and transport.get_extra_info("sslcontext") is not None:
        return "mqtts"
    return "mqtt"


def mqtt_clients(broker: MQTTBroker) -> list[ClientInfo]:
    """Connections that completed CONNECT (a socket still in its handshake is no client)."""
    out = []
    for conn in list(broker.connections):
        session = conn.session
        if session is None:
            continue
        identity = conn.identity
        out.append(
            ClientInfo(
                id=conn.client_id,
                transport=transport_name(conn),
                user=identity.username if identity is not None else None,
                token_id=identity.token_id if identity is not None else None,
                address=conn.peer,
                since=conn.connected_at,
                subscriptions=tuple(session.subscriptions),
            )
        )
    return out
