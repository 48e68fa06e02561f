// A reference peer for `python -m bench gateway`: the seed's job in Node.js.
// Subscribes to ROOT/events/# and broadcasts every message to every connected socket.
//   KIND=socketio  socket.io 4, as the seed did it (io.emit of the parsed activity)
//   KIND=ws        the bare `ws` library, the broker's bytes glued into Dovecote's envelope
// Env: MQTT_URL, ROOT, PORT, KIND. Prints "ready" once listening and subscribed.
"use strict";
const http = require("http");
const mqtt = require("mqtt");

const { MQTT_URL, ROOT, PORT, KIND } = process.env;
const server = http.createServer((req, res) => {
  res.writeHead(req.url === "/healthz" ? 200 : 404);
  res.end();
});
let broadcast;

if (KIND === "socketio") {
  const { Server } = require("socket.io");
  const io = new Server(server, { serveClient: false, perMessageDeflate: false });
  broadcast = (topic, payload) => io.emit("bus", { topic, activity: JSON.parse(payload) });
} else if (KIND === "ws") {
  const { WebSocketServer, WebSocket } = require("ws");
  const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false });
  broadcast = (topic, payload) => {
    const frame = Buffer.concat([
      Buffer.from(`{"topic":${JSON.stringify(topic)},"activity":`),
      payload,
      Buffer.from("}"),
    ]);
    for (const socket of wss.clients) {
      if (socket.readyState === WebSocket.OPEN) socket.send(frame, { binary: false });
    }
  };
} else {
  console.error(`KIND must be socketio or ws, not ${KIND}`);
  process.exit(2);
}

const bus = mqtt.connect(MQTT_URL, { clean: true, clientId: `peer-${KIND}-${process.pid}` });
bus.on("message", broadcast);
bus.on("error", (err) => console.error(`mqtt: ${err.message}`));
bus.on("connect", () => {
  bus.subscribe(`${ROOT}/events/#`, { qos: 1 }, (err) => {
    if (err) throw err;
    if (!server.listening) server.listen(Number(PORT), "127.0.0.1", () => console.log("ready"));
  });
});
process.on("SIGTERM", () => process.exit(0));
