"""The PUBLISH path's caches: checked topic names by their bytes (decoding), encoded topic
fields by name and prebuilt fixed headers (encoding). Shared by the decoder's inlined QoS 1
path, the PUBLISH encoders and mqtt/link.py's window writer."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec.primitives import _encode_str
from pushwire.mqtt.codec.wire import _U16, _VBI_CONTINUATION

# topic names seen lately, as bytes -> the checked str: a publisher repeats its topics, and
# the checks (wildcards, U+0000, UTF-8) and the decoding are the same every time. Cleared
# when full, so a client that never repeats a topic costs one dict insert per PUBLISH.
_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX: Final = 4096
_TOPIC_CACHED_BYTES: Final = 256  # longer names are checked each time: the cache stays small


# topic name -> its encoded field (2-byte length, UTF-8), for PUBLISHes encoded one by one:
# a subscriber gets the same few topics over and over. Bounded like _TOPICS.
_TOPIC_FIELDS: dict[str, bytes] = {}


def _topic_field(topic: str) -> bytes:
    field = _encode_str(topic)
    if len(field) <= _TOPIC_CACHED_BYTES + 2:
        if len(_TOPIC_FIELDS) >= _TOPICS_MAX:
            _TOPIC_FIELDS.clear()
        _TOPIC_FIELDS[topic] = field
    return field


# fixed headers of PUBLISH packets shorter than 128 bytes, by first byte and length
_SMALL_HEADS: Final = {
    byte0: tuple(bytes((byte0, n)) for n in range(_VBI_CONTINUATION)) for byte0 in range(0x30, 0x40)
}


# for encoders of several PUBLISHes in one join (mqtt/link.py `send_window`, which takes
# a topic's field from `topic_field`): the prebuilt fixed headers and the packet id
SMALL_PUBLISH_HEADS: Final = _SMALL_HEADS
PACKET_ID: Final = _U16


def topic_field(topic: str) -> bytes:
    """The encoded topic name field (2-byte length, UTF-8), cached per name; raises
    ValueError when too long."""
    field = _TOPIC_FIELDS.get(topic)
    return field if field is not None else _topic_field(topic)
