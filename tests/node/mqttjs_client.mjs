// An MQTT.js client for Tern's tests: connects to URL (ws:// or wss://), subscribes, publishes,
// and prints what happened as JSON lines on stdout:
//   {"event":"connected","sessionPresent":false}
//   {"event":"subscribed","granted":[1]}
//   {"event":"received","messages":[{"topic":"...","payload":"...","qos":1,"retain":false}]}
// It exits 0 once it has received --expect messages and closed, and non-zero (with an
// {"event":"error"} line) on an error or when --timeout runs out.
//
// Usage: node mqttjs_client.mjs URL [--version 4|5] [--ca FILE] [--topic FILTER]
//          [--publish TOPIC=PAYLOAD]... [--expect N] [--timeout MS] [--id CLIENT_ID]

import { readFileSync } from "node:fs";
import process from "node:process";
import mqtt from "mqtt";

function parse(argv) {
  const options = {
    url: null,
    version: 5,
    ca: null,
    topic: null,
    publish: [],
    expect: 0,
    timeout: 10000,
    id: `mqttjs-${process.pid}`,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case "--version": options.version = Number(value()); break;
      case "--ca": options.ca = value(); break;
      case "--topic": options.topic = value(); break;
      case "--publish": {
        const text = value();
        const eq = text.indexOf("=");
        if (eq < 1) throw new Error(`--publish takes TOPIC=PAYLOAD, got ${text}`);
        options.publish.push([text.slice(0, eq), text.slice(eq + 1)]);
        break;
      }
      case "--expect": options.expect = Number(value()); break;
      case "--timeout": options.timeout = Number(value()); break;
      case "--id": options.id = value(); break;
      default:
        if (arg.startsWith("--") || options.url) throw new Error(`unexpected argument ${arg}`);
        options.url = arg;
    }
  }
  if (!options.url) throw new Error("missing URL");
  return options;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function fail(message, received) {
  emit({ event: "error", message, received });
  process.exit(1);
}

const options = (() => {
  try {
    return parse(process.argv.slice(2));
  } catch (e) {
    emit({ event: "error", message: e.message });
    process.exit(2);
  }
})();

const received = [];
const timer = setTimeout(
  () => fail(`timed out after ${options.timeout} ms`, received),
  options.timeout,
);

const client = mqtt.connect(options.url, {
  protocolVersion: options.version,
  clientId: options.id,
  clean: true,
  reconnectPeriod: 0,
  connectTimeout: options.timeout,
  ca: options.ca ? readFileSync(options.ca) : undefined,
  rejectUnauthorized: true,
});

client.on("error", (e) => fail(`client error: ${e.message}`, received));

client.on("message", (topic, payload, packet) => {
  received.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain });
  finish();
});

// Done once every publish is acknowledged and the expected messages are in.
let published = false;
let finished = false;
function finish() {
  if (finished || !published || received.length < options.expect) return;
  finished = true;
  emit({ event: "received", messages: received });
  client.end(false, () => {
    clearTimeout(timer);
    process.exit(0);
  });
}

client.on("connect", async (connack) => {
  emit({ event: "connected", sessionPresent: connack.sessionPresent });
  try {
    if (options.topic) {
      const granted = await client.subscribeAsync(options.topic, { qos: 1 });
      emit({ event: "subscribed", granted: granted.map((g) => g.qos) });
    }
    for (const [topic, payload] of options.publish) {
      await client.publishAsync(topic, payload, { qos: 1 });
      emit({ event: "published", topic });
    }
    published = true;
    finish();
  } catch (e) {
    fail(`${e.message}`, received);
  }
});
