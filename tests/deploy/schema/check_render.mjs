// Consistency of one rendered overlay (kubectl kustomize output) with itself and with the agent:
// what the schema cannot see. Run by tests/deploy/test_render.sh.
// Usage: node check_render.mjs [--conf-out DIR] RENDERED.yaml AGENT_HELP.txt REFLECTOR_SOURCE
//                              [KEY=VALUE...]
//   --conf-out DIR    write the agent's --config files there, named 1-agent.conf, 2-..., in
//                     the order the agent reads them (the test parses them with the agent)
//   AGENT_HELP.txt    `sluice-agent --help` output: every flag in args and config files exists
//   REFLECTOR_SOURCE  agent/sources/kube/reflector.cc: the ClusterRole grants exactly the
//                     resources the agent lists and watches, with verbs list and watch
//   KEY=VALUE         settings this overlay must end up with (after all --config files)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

const problems = [];
const fail = (msg) => problems.push(msg);

function load(file) {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => d.toJS())
    .filter((d) => d);
}

// sluice-agent's flags from its --help: "  --flag-name TYPE  description".
function help_flags(text) {
  const flags = new Set();
  for (const m of text.matchAll(/^\s+(?:-\w,)?--([a-z0-9][a-z0-9-]*)/gm)) {
    flags.add(m[1]);
  }
  return flags;
}

// The config files' grammar as the DaemonSet uses it: `name = value`, # comments, values quoted
// strings, numbers or booleans. Returns Map name -> string value.
function parse_conf(text, where) {
  const out = new Map();
  text.split("\n").forEach((raw, n) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) {
      return;
    }
    const m = line.match(/^([a-z0-9-]+)\s*=\s*(.*)$/);
    if (!m) {
      fail(`${where}:${n + 1}: not "name = value": ${line}`);
      return;
    }
    let v = m[2].trim();
    if (v.startsWith('"')) {
      if (!/^"[^"]*"$/.test(v)) {
        fail(`${where}:${n + 1}: unterminated string: ${line}`);
        return;
      }
      v = v.slice(1, -1);
    } else if (!/^(-?\d+|true|false)$/.test(v)) {
      fail(`${where}:${n + 1}: value must be a quoted string, a number or true/false: ${line}`);
      return;
    }
    out.set(m[1], v);
  });
  return out;
}

// (group, resource) pairs of the agent's list/watch paths: "/api/v1/pods",
// "/apis/discovery.k8s.io/v1/endpointslices".
function agent_resources(source) {
  const out = new Set();
  for (const m of source.matchAll(/"\/(api|apis\/([a-z0-9.-]+))\/v[0-9a-z]+\/([a-z]+)"/g)) {
    out.add(`${m[2] ?? ""}/${m[3]}`);
  }
  return out;
}

function main(argv) {
  let conf_out = null;
  if (argv[0] === "--conf-out") {
    conf_out = argv[1];
    argv = argv.slice(2);
  }
  const [rendered, help_file, reflector_file, ...expect] = argv;
  let conf_count = 0;
  const docs = load(rendered);
  const flags = help_flags(readFileSync(help_file, "utf8"));
  if (flags.size < 10 || !flags.has("kubeconfig")) {
    fail(`${help_file} does not look like sluice-agent --help (${flags.size} flags)`);
  }
  const find = (kind, name, ns) =>
    docs.find((d) => d.kind === kind && d.metadata?.name === name && (ns === undefined || d.metadata?.namespace === ns));

  const daemonsets = docs.filter((d) => d.kind === "DaemonSet");
  if (daemonsets.length !== 1) {
    fail(`expected one DaemonSet, found ${daemonsets.length}`);
    return;
  }
  const ds = daemonsets[0];
  const ns = ds.metadata.namespace;
  const pod = ds.spec.template.spec;
  if (!ns) {
    fail("the DaemonSet has no namespace");
  }
  for (const d of docs) {
    const cluster_scoped = ["ClusterRole", "ClusterRoleBinding", "Namespace"].includes(d.kind);
    if (!cluster_scoped && d.metadata?.namespace !== ns) {
      fail(`${d.kind} ${d.metadata?.name} is in namespace ${d.metadata?.namespace}, the DaemonSet in ${ns}`);
    }
  }

  // selector
  const labels = ds.spec.template.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(ds.spec.selector?.matchLabels ?? {})) {
    if (labels[k] !== v) {
      fail(`selector ${k}=${v} does not match the pod template's labels`);
    }
  }

  // identity and RBAC
  const sa = pod.serviceAccountName;
  if (!find("ServiceAccount", sa, ns)) {
    fail(`ServiceAccount ${ns}/${sa} (the DaemonSet's) is not in the output`);
  }
  const bindings = docs.filter(
    (d) => d.kind === "ClusterRoleBinding" &&
      (d.subjects ?? []).some((s) => s.kind === "ServiceAccount" && s.name === sa && s.namespace === ns),
  );
  if (bindings.length !== 1) {
    fail(`expected one ClusterRoleBinding for ServiceAccount ${ns}/${sa}, found ${bindings.length}`);
  } else {
    const role = find("ClusterRole", bindings[0].roleRef.name);
    if (!role || bindings[0].roleRef.kind !== "ClusterRole") {
      fail(`ClusterRole ${bindings[0].roleRef.name} (bound to the agent) is not in the output`);
    } else {
      const granted = new Set();
      for (const r of role.rules ?? []) {
        const verbs = [...(r.verbs ?? [])].sort().join(",");
        if (verbs !== "list,watch") {
          fail(`ClusterRole rule ${JSON.stringify(r)}: verbs must be exactly list and watch`);
        }
        if (r.resourceNames || r.nonResourceURLs) {
          fail(`ClusterRole rule ${JSON.stringify(r)}: unexpected resourceNames/nonResourceURLs`);
        }
        for (const g of r.apiGroups ?? []) {
          for (const res of r.resources ?? []) {
            granted.add(`${g}/${res}`);
          }
        }
      }
      const used = agent_resources(readFileSync(reflector_file, "utf8"));
      if (used.size === 0) {
        fail(`no API paths found in ${reflector_file}`);
      }
      const show = (s) => [...s].sort().join(" ");
      if (show(used) !== show(granted)) {
        fail(`ClusterRole grants {${show(granted)}}; the agent lists and watches {${show(used)}}`);
      }
    }
  }

  // flags: args and --config files
  const containers = pod.containers ?? [];
  const agent = containers.find((c) => c.name === "agent");
  if (!agent) {
    fail("no container named agent");
    return;
  }
  const images = new Set([...containers, ...(pod.initContainers ?? [])].map((c) => c.image));
  if (images.size !== 1) {
    fail(`containers use different images: ${[...images].join(", ")}`);
  }
  const settings = new Map();
  for (const arg of agent.args ?? []) {
    const m = arg.match(/^--([a-z0-9-]+)(?:=(.*))?$/);
    if (!m) {
      fail(`agent arg ${arg}: not --flag or --flag=value`);
      continue;
    }
    if (!flags.has(m[1])) {
      fail(`agent arg --${m[1]} is not a sluice-agent flag`);
    }
    if (m[1] !== "config") {
      continue;
    }
    // --config=PATH: PATH must be a key of a ConfigMap volume mounted at its directory.
    const dir = path.dirname(m[2]);
    const key = path.basename(m[2]);
    const mount = (agent.volumeMounts ?? []).find((v) => v.mountPath === dir);
    const vol = mount && (pod.volumes ?? []).find((v) => v.name === mount.name);
    const cm = vol?.configMap && find("ConfigMap", vol.configMap.name, ns);
    if (!cm) {
      fail(`--config=${m[2]}: no ConfigMap volume mounted at ${dir} (or its ConfigMap is missing)`);
      continue;
    }
    if (!(key in (cm.data ?? {}))) {
      fail(`--config=${m[2]}: ConfigMap ${cm.metadata.name} has no key ${key}`);
      continue;
    }
    if (conf_out) {
      mkdirSync(conf_out, { recursive: true });
      writeFileSync(path.join(conf_out, `${++conf_count}-${key}`), cm.data[key]);
    }
    for (const [name, value] of parse_conf(cm.data[key], `${cm.metadata.name}/${key}`)) {
      if (!flags.has(name)) {
        fail(`${cm.metadata.name}/${key}: ${name} is not a sluice-agent flag`);
      }
      settings.set(name, value); // a later file wins, as in the agent
    }
  }

  // the probes reach the health server where the agent listens
  const healthz = settings.get("healthz-bind-address") ?? "0.0.0.0:10256";
  const port = Number(healthz.split(":").pop());
  for (const probe of ["livenessProbe", "readinessProbe"]) {
    const p = agent[probe]?.httpGet;
    if (!p) {
      fail(`agent has no ${probe} httpGet`);
    } else if (p.port !== port) {
      fail(`${probe} on port ${p.port}, the agent serves health on ${healthz}`);
    }
  }
  if (!pod.hostNetwork) {
    fail("the agent must run with hostNetwork");
  }

  for (const e of expect) {
    const [name, ...rest] = e.split("=");
    const want = rest.join("=");
    const got = settings.get(name);
    if (want === "" ? got !== undefined : got !== want) {
      fail(`setting ${name}: expected ${want === "" ? "unset" : JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
  }
  console.log(
    `${docs.length} objects; agent settings: ${[...settings].map(([k, v]) => `${k}=${v}`).join(" ")}`,
  );
}

main(process.argv.slice(2));
for (const p of problems) {
  console.log(`FAIL: ${p}`);
}
process.exitCode = problems.length ? 1 : 0;
