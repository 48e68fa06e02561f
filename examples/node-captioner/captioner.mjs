// The captioner: a Dovecote service in Node.js. For every upload (events/image/created) it
// publishes one line of alt text on its own topic, events/image/captioned, declared in
// Python like every contract (services/captioner/topics.py); see docs/adding-a-service.md,
// "In another language". Run from the project: `node examples/node-captioner/captioner.mjs`.
import mqtt from "mqtt";
import { ConfigError, NAME, settings } from "./config.mjs";
import { captioned, presence } from "./caption.mjs";
import { loadSchemas, reason } from "./schemas.mjs";

function log(level, text) {
  console.log(`${new Date().toISOString()} ${level} ${NAME}: ${text}`);
}

let config, schemas;
try {
  config = settings();
  schemas = loadSchemas(config.schemas, ["ImageCreated", "ImageCaptioned", "Presence", "Activity"]);
} catch (err) {
  log("ERROR", `cannot start: ${err.message}`);
  process.exit(err instanceof ConfigError ? 2 : 1); // 2: a configuration error, don't restart
}

const { root, instance } = config;
const uploads = `${root}/events/image/created`;
const query = `${root}/services/query`;
const own = `${root}/events/image/captioned`;
const presenceTopic = `${root}/services/${NAME}/${instance}`;

function presencePayload(online) {
  const made = presence(NAME, instance, config.host, online);
  if (!schemas.Presence(made)) throw new Error(`presence: ${reason(schemas.Presence)}`);
  return JSON.stringify(made);
}

const client = mqtt.connect({
  ...config.broker,
  clientId: config.clientId,
  clean: false, // a persistent session: uploads published while it was away come later
  protocolVersion: 4,
  reconnectPeriod: 1000, // reconnects on its own, every second
  connectTimeout: 10_000,
  will: { topic: presenceTopic, payload: presencePayload(false), qos: 1, retain: true },
});

// One message at a time; `done` acknowledges it. mqtt.js reads the connection in order, so
// the ack cannot wait for the caption's own PUBACK (that would never be read): the caption is
// handed to mqtt.js first, which resends it after a reconnect until the broker has it. A
// redelivered upload makes the caption again with the same id, which subscribers skip.
client.handleMessage = (packet, done) => {
  const finish = () => done();
  try {
    if (packet.topic === query) return answerQuery(packet.payload, finish);
    if (packet.topic === uploads) return caption(packet.payload, finish);
    log("WARNING", `nothing reads ${packet.topic} here; skipped`);
  } catch (err) {
    log("ERROR", `handling ${packet.topic} failed, skipped: ${err.stack ?? err}`);
  }
  finish();
};

function parse(payload, validate, topic) {
  let value;
  try {
    value = JSON.parse(payload.toString("utf8"));
  } catch (err) {
    log("WARNING", `invalid payload on ${topic}, skipped: not JSON (${err.message})`);
    return null;
  }
  if (!validate(value)) {
    log("WARNING", `invalid payload on ${topic}, skipped: ${reason(validate)}`);
    return null;
  }
  return value;
}

function caption(payload, done) {
  const created = parse(payload, schemas.ImageCreated, uploads);
  if (created === null) return done();
  const activity = captioned(created, NAME, { broken: config.broken });
  if (!schemas.ImageCaptioned(activity)) {
    const why = reason(schemas.ImageCaptioned);
    if (!config.broken) {
      // Our own bug: the contract says no, so the bus never sees it.
      log("ERROR", `made an invalid caption for ${created.object.id}, not sent: ${why}`);
      return done();
    }
    log("WARNING", `CAPTIONER_BREAK=1: sending an invalid caption on purpose (${why})`);
  }
  client.publish(own, JSON.stringify(activity), { qos: 1, retain: false }, (err) => {
    if (err) log("ERROR", `publishing the caption of ${created.object.id} failed: ${err.message}`);
  });
  log("INFO", `captioned ${created.object.id} [context=${activity.context}]`);
  done();
}

// Who is online? Every worker answers the presence query with its Join again.
function answerQuery(payload, done) {
  if (parse(payload, schemas.Activity, query) === null) return done();
  client.publish(presenceTopic, presencePayload(true), { qos: 1, retain: true });
  done();
}

client.on("connect", (connack) => {
  log("INFO", `connected as ${config.clientId} (session present: ${connack.sessionPresent})`);
  client.subscribe([uploads, query], { qos: 1 }, (err, granted) => {
    const refused = (granted ?? []).filter((g) => g.qos >= 0x80).map((g) => g.topic);
    if (err || refused.length) {
      return log("ERROR", `subscribing refused: ${err?.message ?? refused.join(", ")}`);
    }
    // Online once subscribed, as a Python worker: what is published from now on reaches it.
    client.publish(presenceTopic, presencePayload(true), { qos: 1, retain: true });
  });
});
client.on("reconnect", () => log("INFO", "reconnecting"));
client.on("offline", () => log("WARNING", "offline"));
client.on("error", (err) => log("ERROR", `broker: ${err.message}`));

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  log("INFO", `${signal}: going offline`);
  setTimeout(() => process.exit(0), 5000).unref(); // a broker that is gone: don't hang
  const leave = () => client.end(false, {}, () => process.exit(0));
  if (!client.connected) return leave();
  client.publish(presenceTopic, presencePayload(false), { qos: 1, retain: true }, leave);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
