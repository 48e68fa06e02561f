// The captioner's configuration, read once from the environment at start-up, with the
// names and defaults every Dovecote service uses (shared/dovecote/config.py).
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import os from "node:os";

export const NAME = "captioner"; // its name in the manifest (services/federation.py)
const ID = /^[a-z0-9_-]{1,64}$/; // one topic level: dovecote.topics.check_id
const PORTS = { mqtt: 1883, tcp: 1883, mqtts: 8883, ws: 80, wss: 443 };

export class ConfigError extends Error {}

function id(value, what) {
  if (ID.test(value)) return value;
  throw new ConfigError(`${what} must match ${ID.source}, got ${JSON.stringify(value)}`);
}

// mqtt://user:pass@host:port, or several nodes of one cluster: mqtt://u:p@a:1883,b:1884
export function brokerOptions(url, caFile) {
  const match = /^([a-z]+):\/\/(?:([^@]*)@)?([^/]+)(\/.*)?$/.exec(url);
  if (!match || !(match[1] in PORTS)) throw new ConfigError(`MQTT_URL: not a broker URL: ${url}`);
  const [, given, auth, hosts, rest] = match;
  const protocol = given === "tcp" ? "mqtt" : given;
  const servers = hosts.split(",").map((node) => {
    const [host, port] = node.trim().split(":");
    return { host, port: Number(port || PORTS[protocol]), protocol };
  });
  const options = { protocol, host: servers[0].host, port: servers[0].port, servers };
  if (auth) {
    const [user, ...pass] = auth.split(":");
    options.username = decodeURIComponent(user);
    if (pass.length) options.password = decodeURIComponent(pass.join(":"));
  }
  if (protocol.startsWith("ws")) options.path = rest || "/mqtt";
  if (caFile) options.ca = fs.readFileSync(caFile);
  return options;
}

export function settings(env = process.env) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = id((env.DOVECOTE_ROOT || "dovecote").trim(), "DOVECOTE_ROOT");
  const instance = id((env.DOVECOTE_INSTANCE || "1").trim(), "DOVECOTE_INSTANCE");
  return {
    root,
    instance,
    clientId: `${root}-${NAME}-${instance}`,
    broker: brokerOptions(
      (env.MQTT_URL || "mqtt://localhost:1883").trim(),
      env.MQTT_CA_FILE?.trim(),
    ),
    // The committed schemas, read where the repository has them: never a copy.
    schemas: env.DOVECOTE_SCHEMAS || path.resolve(here, "..", "..", "docs", "schemas"),
    host: os.hostname().slice(0, 200),
    // Make every caption wrong on purpose (no inReplyTo): the subscribers must refuse it.
    broken: env.CAPTIONER_BREAK === "1",
  };
}
