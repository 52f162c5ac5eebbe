// Checks Kubernetes objects (multi-document YAML, e.g. `kubectl kustomize` output) against the
// Kubernetes API schema, two ways, because each misses what the other finds:
//  1. kubernetes-models: the OpenAPI schema as JSON-schema validators (required fields, types,
//     formats, int32 ranges). It accepts unknown fields.
//  2. kubernetes-types + the TypeScript compiler: every object is checked as an object literal of
//     its API type, so an unknown or misspelt field anywhere is an error (excess property
//     check), as are missing required fields and wrong types.
// Usage: node validate.mjs FILE...    exit 0 when every object passes, 1 otherwise
//        node validate.mjs --self-test broken objects must each be rejected by the checks
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

// "apps/v1" -> {group: "apps", version: "v1"}; "v1" -> core.
function split_api_version(api_version) {
  const parts = String(api_version).split("/");
  return parts.length === 1 ? { group: "", version: parts[0] } : { group: parts[0], version: parts[1] };
}

// kubernetes-models: a class per kind under kubernetes-models/<group>/<version> (core: /<version>).
async function check_models(doc) {
  const { group, version } = split_api_version(doc.apiVersion);
  const module_path = group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  let mod;
  try {
    mod = await import(module_path);
  } catch {
    return [`unknown apiVersion ${doc.apiVersion}`];
  }
  const cls = mod[doc.kind];
  if (typeof cls !== "function") {
    return [`unknown kind ${doc.kind} in ${doc.apiVersion}`];
  }
  try {
    new cls(doc).validate();
    return [];
  } catch (e) {
    const errors = e.errors ?? [];
    return errors.length
      ? errors.map((x) => `${x.instancePath || "/"} ${x.message}`)
      : [String(e.message ?? e)];
  }
}

// kubernetes-types module for an API group: "rbac.authorization.k8s.io" -> rbac, "" -> core.
function types_module(group, version) {
  return `kubernetes-types/${group ? group.split(".")[0] : "core"}/${version}`;
}

// All objects in one TypeScript program (one compile); diagnostics are mapped back to objects.
function check_types(docs) {
  const lines = [];
  const imports = new Map();
  const owner = []; // line number -> object index
  docs.forEach((doc, i) => {
    const { group, version } = split_api_version(doc.apiVersion);
    const mod = types_module(group, version);
    if (!imports.has(mod)) {
      imports.set(mod, `t${imports.size}`);
    }
  });
  for (const [mod, alias] of imports) {
    lines.push(`import type * as ${alias} from ${JSON.stringify(mod)};`);
  }
  docs.forEach((doc, i) => {
    const { group, version } = split_api_version(doc.apiVersion);
    const alias = imports.get(types_module(group, version));
    const body = JSON.stringify(doc, null, 1).split("\n");
    body[0] = `export const o${i}: ${alias}.${doc.kind} = ${body[0]}`;
    body[body.length - 1] += ";";
    for (const l of body) {
      owner[lines.length] = i;
      lines.push(l);
    }
  });
  const file = path.join(here, "__objects__.ts");
  const source = lines.join("\n");
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const read = host.readFile.bind(host);
  const exists = host.fileExists.bind(host);
  host.readFile = (f) => (path.resolve(f) === file ? source : read(f));
  host.fileExists = (f) => path.resolve(f) === file || exists(f);
  const getSource = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang, ...rest) =>
    path.resolve(f) === file ? ts.createSourceFile(f, source, lang, true) : getSource(f, lang, ...rest);
  const program = ts.createProgram([file], options, host);
  const per_object = docs.map(() => []);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, "\n  ");
    if (!d.file || path.resolve(d.file.fileName) !== file) {
      throw new Error(`TypeScript setup: ${text}`);
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const i = owner[line];
    if (i === undefined) {
      throw new Error(`TypeScript setup: ${text}`);
    }
    per_object[i].push(`${text} (at: ${lines[line].trim()})`);
  }
  return per_object;
}

function name_of(doc) {
  const ns = doc.metadata?.namespace ? `${doc.metadata.namespace}/` : "";
  return `${doc.kind ?? "?"} ${ns}${doc.metadata?.name ?? "?"}`;
}

export async function validate(docs) {
  const problems = docs.map(() => []);
  docs.forEach((doc, i) => {
    if (!doc || typeof doc !== "object" || !doc.apiVersion || !doc.kind) {
      problems[i].push("not a Kubernetes object (apiVersion and kind required)");
    }
  });
  const typed = docs.map((d, i) => (problems[i].length ? null : d));
  const ok = typed.filter(Boolean);
  const type_problems = check_types(ok);
  let k = 0;
  for (let i = 0; i < docs.length; i++) {
    if (!typed[i]) {
      continue;
    }
    problems[i].push(...(await check_models(docs[i])).map((p) => `schema: ${p}`));
    problems[i].push(...type_problems[k++].map((p) => `types: ${p}`));
  }
  return problems;
}

function load(file) {
  const docs = [];
  for (const d of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (d.errors.length) {
      throw new Error(`${file}: ${d.errors[0].message}`);
    }
    const js = d.toJS();
    if (js !== null && js !== undefined) {
      docs.push(js);
    }
  }
  return docs;
}

// Objects that must fail, each for one reason the checks exist to catch.
function broken_objects() {
  const ds = () => ({
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: "x" },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i" }] },
      },
    },
  });
  const cases = [];
  let d = ds();
  d.spec.template.spec.hostNetwrok = true;
  cases.push(["misspelt field in a pod spec", d]);
  d = ds();
  d.spec.template.spec.containers[0].volumeMounts = [{ name: "v", mountPath: "/x", mountPropagaton: "HostToContainer" }];
  cases.push(["misspelt field deep in a container", d]);
  d = ds();
  delete d.spec.selector;
  cases.push(["missing required field", d]);
  d = ds();
  d.spec.template.spec.containers[0].ports = [{ containerPort: "10256" }];
  cases.push(["string where an integer is required", d]);
  d = ds();
  d.spec.template.spec.containers[0].ports = [{ containerPort: 4294967296 }];
  cases.push(["integer outside int32", d]);
  cases.push(["unknown kind", { apiVersion: "apps/v1", kind: "DeamonSet", metadata: { name: "x" } }]);
  cases.push([
    "wrong type in an RBAC rule",
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "x" }, rules: [{ verbs: "list" }] },
  ]);
  return cases;
}

async function self_test() {
  const cases = broken_objects();
  const good = broken_objects()[0][1];
  delete good.spec.template.spec.hostNetwrok;
  const problems = await validate([good, ...cases.map((c) => c[1])]);
  let failed = 0;
  if (problems[0].length) {
    console.log(`FAIL: a valid DaemonSet was rejected: ${problems[0].join("; ")}`);
    failed++;
  }
  cases.forEach(([what, _], i) => {
    const p = problems[i + 1];
    if (p.length === 0) {
      console.log(`FAIL: not rejected: ${what}`);
      failed++;
    } else {
      console.log(`ok: rejected ${what}: ${p[0]}`);
    }
  });
  return failed === 0;
}

async function main(argv) {
  if (argv[0] === "--self-test") {
    return (await self_test()) ? 0 : 1;
  }
  if (argv.length === 0) {
    console.error("usage: node validate.mjs FILE... | --self-test");
    return 2;
  }
  let bad = 0;
  let count = 0;
  for (const file of argv) {
    const docs = load(file);
    const problems = await validate(docs);
    docs.forEach((doc, i) => {
      count++;
      if (problems[i].length) {
        bad++;
        console.log(`FAIL ${path.basename(file)}: ${name_of(doc)}`);
        for (const p of problems[i]) {
          console.log(`  ${p}`);
        }
      }
    });
  }
  console.log(`${count - bad} of ${count} objects valid (${require("kubernetes-types/package.json").version} API types)`);
  return bad === 0 && count > 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
