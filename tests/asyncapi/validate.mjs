// Runs the official @asyncapi/parser on one AsyncAPI file and prints its verdict as JSON:
// {"valid": bool, "diagnostics": [{"severity", "code", "message", "path"}]}. Exit 1 if invalid.
import { readFileSync } from "node:fs";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const file = process.argv[2];
const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"), {
  source: file,
});
const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([k, v]) => [v, k]));
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
const valid = document !== undefined && errors.length === 0;
console.log(
  JSON.stringify({
    valid,
    diagnostics: diagnostics.map((d) => ({
      severity: names[d.severity],
      code: d.code,
      message: d.message,
      path: d.path.join("/"),
    })),
  }),
);
process.exit(valid ? 0 : 1);
