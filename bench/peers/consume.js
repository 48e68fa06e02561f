// A reference consumer for `python -m bench consume`: the seed's stack, mqtt.js on Node.js.
// Joins the persistent session CLIENT_ID (clean: false) on TOPIC at QoS 1, and for each
// message does what the seed did: JSON.parse and a field check; mqtt.js acknowledges it
// once the handler has returned. After N messages it prints one JSON line and exits:
//   began_to_last  seconds from before its connect to the Nth message (a backlog's drain)
//   first_to_last  seconds from the 1st to the Nth message (a live stream's rate)
//   cpu_us         CPU microseconds a message of this process, from the 1st to the Nth
// Env: MQTT_URL, CLIENT_ID, TOPIC, N. Prints "subscribed" once the broker granted TOPIC.
"use strict";
const mqtt = require("mqtt");

const { MQTT_URL, CLIENT_ID, TOPIC } = process.env;
const N = Number(process.env.N);
let count = 0;
let invalid = 0;
let first = 0;
let cpuFirst = null;

const began = performance.now();
const bus = mqtt.connect(MQTT_URL, { clean: false, clientId: CLIENT_ID, reconnectPeriod: 0 });
bus.on("error", (err) => {
  console.error(`mqtt: ${err.message}`);
  process.exit(1);
});
bus.on("connect", () => {
  bus.subscribe(TOPIC, { qos: 1 }, (err) => {
    if (err) throw err;
    console.log("subscribed");
  });
});
bus.on("message", (topic, payload) => {
  const activity = JSON.parse(payload);
  if (typeof activity.id !== "string" || typeof activity.type !== "string") invalid += 1;
  count += 1;
  if (count === 1) {
    first = performance.now();
    cpuFirst = process.cpuUsage();
  }
  if (count === N) {
    const last = performance.now();
    const cpu = process.cpuUsage(cpuFirst);
    console.log(
      JSON.stringify({
        began_to_last: (last - began) / 1000,
        first_to_last: (last - first) / 1000,
        cpu_us: (cpu.user + cpu.system) / Math.max(N - 1, 1),
        invalid,
      }),
    );
    // The last PUBACK is written after this handler returns: end once it has gone.
    setImmediate(() => bus.end(false, () => process.exit(0)));
  }
});
