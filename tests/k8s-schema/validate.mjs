// Validates Kubernetes manifests (YAML streams, files given or stdin) offline against the
// Kubernetes OpenAPI schemas that the kubernetes-models package ships. Exit 1 naming each
// invalid object, 2 for an object of an unknown apiVersion/kind (nothing goes unchecked).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);

function modelFor(apiVersion, kind) {
  const path = apiVersion.includes("/") ? apiVersion : apiVersion; // core "v1" is kubernetes-models/v1
  try {
    const mod = require(`kubernetes-models/${path}`);
    return mod[kind];
  } catch {
    return undefined;
  }
}

const files = process.argv.slice(2);
const inputs = files.length ? files.map((f) => [f, readFileSync(f, "utf8")]) : [["-", readFileSync(0, "utf8")]];
let checked = 0, invalid = 0, unknown = 0;
for (const [name, text] of inputs) {
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      console.error(`${name}: not YAML: ${doc.errors[0].message}`);
      invalid++;
      continue;
    }
    const obj = doc.toJS();
    if (obj == null) continue;
    const what = `${name}: ${obj.kind}/${obj.metadata?.namespace ? obj.metadata.namespace + "/" : ""}${obj.metadata?.name}`;
    const Model = modelFor(String(obj.apiVersion), String(obj.kind));
    if (!Model) {
      console.error(`${what}: no schema for ${obj.apiVersion} ${obj.kind}`);
      unknown++;
      continue;
    }
    try {
      new Model(obj).validate();
      checked++;
    } catch (e) {
      console.error(`${what}: ${e.message}`);
      if (e.errors) for (const err of e.errors) console.error(`  ${err.instancePath} ${err.message} ${JSON.stringify(err.params)}`);
      invalid++;
    }
  }
}
console.log(`${checked} valid, ${invalid} invalid, ${unknown} without a schema`);
process.exit(invalid ? 1 : unknown ? 2 : checked ? 0 : 1);
