// What the captioner makes of an upload: pure functions, no bus.
import crypto from "node:crypto";

const AS_CONTEXT = "https://www.w3.org/ns/activitystreams";
const URL_NAMESPACE = "6ba7b8119dad11d180b400c04fd430c8"; // RFC 4122's NAMESPACE_URL
export const CAPTION_LENGTH = 280; // services/captioner/topics.py

// dovecote.activity.derived_id: uuid5(NAMESPACE_URL, " ".join((cause, *parts))).urn. The
// same upload, redelivered, makes the same ids, and subscribers skip the repeat.
export function derivedId(cause, ...parts) {
  const sha1 = crypto.createHash("sha1");
  sha1.update(Buffer.from(URL_NAMESPACE, "hex"));
  sha1.update([cause, ...parts].join(" "), "utf8");
  const b = sha1.digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x50; // version 5
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  const h = b.toString("hex");
  const groups = [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)];
  return `urn:uuid:${groups.join("-")}`;
}

export function actor(name) {
  return { type: "Service", id: `urn:dovecote:service:${name}`, name };
}

function shape(width, height) {
  if (width === height) return "square";
  return width > height ? "landscape" : "portrait";
}

// One line of alt text: the title, the shape and format, the size, who shared it.
export function captionText(image, who) {
  const format = image.mediaType.split("/")[1].toUpperCase();
  const size = `${image.width}×${image.height}`;
  const tail = ` (a ${shape(image.width, image.height)} ${format}, ${size})` +
    (who ? `, shared by ${who}` : "");
  const room = CAPTION_LENGTH - tail.length - 2;
  const title =
    image.name.length <= room ? image.name : image.name.slice(0, Math.max(room - 1, 0)) + "…";
  return `“${title}”${tail}`.slice(0, CAPTION_LENGTH);
}

// The Create of a Note on events/image/captioned, for one events/image/created activity.
export function captioned(created, service, { broken = false } = {}) {
  const image = created.object;
  const text = captionText(image, created.actor.name || created.actor.id);
  const note = {
    type: "Note",
    id: derivedId(image.id, "caption"),
    content: text,
    inReplyTo: image.id,
  };
  if (broken) delete note.inReplyTo; // CAPTIONER_BREAK=1: a payload the contract refuses
  return {
    "@context": AS_CONTEXT,
    id: derivedId(created.id, "captioned"),
    type: "Create",
    actor: actor(service),
    object: note,
    published: new Date().toISOString(),
    context: created.context || created.id,
    summary: text, // what the dashboard's live feed shows
  };
}

// A worker's presence on services/<name>/<instance>: Join (retained) or its Leave.
export function presence(service, instance, host, online) {
  return {
    "@context": AS_CONTEXT,
    id: `urn:uuid:${crypto.randomUUID()}`,
    type: online ? "Join" : "Leave",
    actor: actor(service),
    object: {
      type: "Service",
      id: `urn:dovecote:service:${service}:${instance}`,
      name: service,
      instance,
      status: online ? "online" : "offline",
      pid: process.pid,
      host,
    },
    published: new Date().toISOString(),
  };
}
