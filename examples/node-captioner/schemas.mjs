// The federation's payload schemas (docs/schemas/*.json, written by `make docs` from the
// Python contracts), compiled once: what the captioner reads and what it makes are checked
// against the same schemas as every Python service's payloads.
import fs from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export function loadSchemas(folder, names) {
  const ajv = new Ajv2020({ allErrors: false, strict: true });
  addFormats(ajv); // published is a date-time
  const validators = {};
  for (const name of names) {
    const schema = JSON.parse(fs.readFileSync(path.join(folder, `${name}.json`), "utf8"));
    validators[name] = ajv.compile(schema);
  }
  return validators;
}

// The first error, said as the Python runtime would name a field: "$.object.url: must ...".
export function reason(validate) {
  const [first] = validate.errors ?? [];
  if (!first) return "invalid";
  const where = "$" + first.instancePath.replaceAll("/", ".");
  return `${where}: ${first.message}`;
}
