// @asyncapi/diff, the AsyncAPI initiative's own classifier, on two AsyncAPI files: each is
// parsed and dereferenced by @asyncapi/parser first (diff needs that), then compared.
// Prints {"breaking": [...], "nonBreaking": [...], "unclassified": [...]} (JSON pointers).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { diff } from "@asyncapi/diff";

async function parsed(file) {
  const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"), {
    source: file,
  });
  if (document === undefined) {
    console.error(`${file}: not a valid AsyncAPI document: ${JSON.stringify(diagnostics[0])}`);
    process.exit(2);
  }
  return document.json();
}

const [before, after] = [await parsed(process.argv[2]), await parsed(process.argv[3])];
const output = diff(before, after);
const paths = (changes) => changes.map((c) => `${c.action} ${c.path}`);
console.log(
  JSON.stringify({
    breaking: paths(output.breaking()),
    nonBreaking: paths(output.nonBreaking()),
    unclassified: paths(output.unclassified()),
  }),
);
