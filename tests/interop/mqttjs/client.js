// One MQTT.js client for tests/integration/test_interop_mqttjs.py, driven by a JSON plan.
//
// usage: node client.js '<plan json>'
// plan: {url, options (mqtt.connect options; Buffers as {"$buffer": "<utf8>"}),
//        subscribe: [[filter, {qos, ...}]], publish: [[topic, payload, {qos, properties}]],
//        expect: N (messages to wait for), timeout_ms}
// Every event is one JSON line on stdout: connect (with the CONNACK's session present and
// properties), subscribed, published, message (topic, payload, qos, retain, properties,
// and the raw PUBLISH's topic and alias), done, error. Exits 0 after `expect` messages (and
// every publish acknowledged), 1 on an error or the timeout.
"use strict";
const mqtt = require("mqtt");

const plan = JSON.parse(process.argv[2]);

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") {
    if (typeof value.$buffer === "string") return Buffer.from(value.$buffer, "utf8");
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = revive(v);
    return out;
  }
  return value;
}

function plain(value) {
  if (Buffer.isBuffer(value)) return { $buffer: value.toString("utf8") };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

function emit(event) {
  process.stdout.write(JSON.stringify(plain(event)) + "\n");
}

const client = mqtt.connect(plan.url, { reconnectPeriod: 0, connectTimeout: 10000, ...revive(plan.options || {}) });
let received = 0;
let published = false;
const expect = plan.expect || 0;
const timer = setTimeout(() => finish(1, "timeout"), plan.timeout_ms || 20000);
let rawPublishes = [];

function finish(code, why) {
  clearTimeout(timer);
  if (code !== 0) emit({ event: "error", message: String(why) });
  else emit({ event: "done" });
  client.end(false, {}, () => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}

function maybeDone() {
  if (published && received >= expect) finish(0);
}

client.on("packetreceive", (packet) => {
  if (packet.cmd === "publish") {
    rawPublishes.push({ topic: packet.topic, alias: (packet.properties || {}).topicAlias });
  }
});

client.on("message", (topic, payload, packet) => {
  const raw = rawPublishes.shift() || {};
  received += 1;
  emit({
    event: "message",
    topic,
    payload: payload.toString("utf8"),
    qos: packet.qos,
    retain: packet.retain,
    properties: packet.properties || {},
    wire_topic: raw.topic,
    wire_alias: raw.alias,
  });
  maybeDone();
});

client.on("error", (err) => finish(1, err && err.message));

client.once("connect", async (connack) => {
  emit({ event: "connect", session_present: connack.sessionPresent, properties: connack.properties || {} });
  try {
    for (const [filter, opts] of plan.subscribe || []) {
      const granted = await client.subscribeAsync(filter, revive(opts || { qos: 0 }));
      emit({ event: "subscribed", filter, granted: granted.map((g) => g.qos) });
    }
    for (const [topic, payload, opts] of revive(plan.publish || [])) {
      await client.publishAsync(topic, payload, opts || {});
      emit({ event: "published", topic });
    }
    published = true;
    maybeDone();
  } catch (err) {
    finish(1, err && err.message);
  }
});
