"""Sans-IO MQTT codec: bytes to packet dataclasses (`mqtt/packets.py`) and back.

Covers MQTT 3.1.1 (protocol level 4) and MQTT 5.0 (protocol level 5). No sockets, no
asyncio: the connection feeds received bytes to a `decoder.Decoder` and writes what
`encoder.encode` returns. One module per job; import from the module that does it (this
package re-exports nothing):

- `errors`: `DecodeError` and its kinds, with the reason code each carries;
- `wire`: packet types, fixed-header bits, integer limits shared by every packet family;
- `header`: the first byte's checks, as one lookup table;
- `primitives`: integers, strings, binary data and framing (read and write);
- `properties`: MQTT 5 properties (read and write, where each may appear);
- `connect`, `publish` (with its acks), `subscribe` (and UNSUBSCRIBE), `control` (PING,
  DISCONNECT, AUTH): each packet family's decode and encode;
- `publish_caches`: checked topic names, encoded topic fields, prebuilt PUBLISH headers;
- `decoder`: stream framing and the hot decode loop; `encoder`: `encode` for any packet.

Spec sections followed (3.1.1 = OASIS Standard 29 October 2014, 5.0 = OASIS Standard
7 March 2019):

- data representation: 3.1.1 section 1.5, 5.0 section 1.5 (two/four byte integers, UTF-8
  strings without U+0000 and ill-formed sequences, variable byte integers of at most four
  bytes, binary data, string pairs);
- fixed header, packet types and their flag bits: 3.1.1 section 2.2, 5.0 section 2.1;
- packet identifiers: 3.1.1 section 2.3.1, 5.0 section 2.2.1;
- properties: 5.0 section 2.2.2 (identifier table 2.2.2.2);
- reason codes: 5.0 section 2.4;
- control packets: 3.1.1 sections 3.1-3.14, 5.0 sections 3.1-3.15;
- topic names: 3.1.1 section 4.7, 5.0 section 4.7; error handling: 5.0 section 4.13.

Every `DecodeError` carries the MQTT 5 reason code the connection should report in a
CONNACK or DISCONNECT (at level 4 the connection just closes). Choices where the specs leave
the code open:

- zero packet identifier where one is required, truncated or trailing bytes, ill-formed
  strings, unknown property identifiers: 0x81 Malformed Packet;
- PUBLISH topic name containing ``+`` or ``#``: 0x90 Topic Name invalid at level 5 (the code
  v5 defines for an unacceptable topic name), 0x82 Protocol Error at level 4;
- property present twice, not allowed in that packet, or outside its value range (boolean
  properties other than 0/1; zero Receive Maximum, Maximum Packet Size or Subscription
  Identifier), Subscription Identifier in a client's PUBLISH, and reason codes the spec does
  not define for that packet: 0x82 Protocol Error (5.0 section 4.13.1).

Left to the connection on purpose: topic filter syntax (answered with a SUBACK failure code),
Will Topic syntax (answered with CONNACK 0x90), Topic Alias values (0 and anything above the
negotiated maximum are 0x94), No Local on a shared subscription, packet-identifier state, a
second CONNECT, and the packet order in general.
"""
