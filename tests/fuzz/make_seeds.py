#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/seed-*: small, realistic objects from
tests/fixtures/manifests, examples/ and the API server's own shapes (reference
kube-semantics.md §3.8: key order as the server writes it). Regression inputs (regress-*) are
written by hand from minimized crashers and are left alone. Run it again after changing it:

    python3 tests/fuzz/make_seeds.py
"""
import json
import pathlib
import shutil

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"

# kind -> the first byte of a decode seed (tests/fuzz/fuzz_support.h default_kind_of)
KIND_BYTE = {"": "-", "Service": "S", "EndpointSlice": "E", "Node": "N", "Pod": "P",
             "Endpoints": "L"}
# kind -> the first byte of a list/watch seed (tests/fuzz/kube_sink.h resource_of)
RESOURCE_BYTE = {"Service": "S", "EndpointSlice": "E", "Node": "N", "Pod": "P"}


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# The API server's own shapes (kube-semantics.md §3.8), managedFields elided.
SERVICE_LB = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "web", "namespace": "default",
                 "uid": "8d5c3f0e-7f55-4a4e-9a59-2a3c1b6e0f11", "resourceVersion": "184213",
                 "creationTimestamp": "2025-03-04T10:21:07Z", "labels": {"app": "web"},
                 "annotations": {"metallb.universe.tf/ip-allocated-from-pool": "default-pool"},
                 "managedFields": [{"manager": "kubectl", "operation": "Update",
                                    "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {"f:ports": {}}}}]},
    "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 10080,
                        "nodePort": 30391},
                       {"name": "https", "protocol": "TCP", "appProtocol": "https", "port": 443,
                        "targetPort": "https-web", "nodePort": 31443}],
             "selector": {"app": "web"}, "clusterIP": "10.96.234.211",
             "clusterIPs": ["10.96.234.211"], "type": "LoadBalancer", "sessionAffinity": "None",
             "loadBalancerSourceRanges": ["203.0.113.0/25"], "externalTrafficPolicy": "Local",
             "healthCheckNodePort": 32751, "ipFamilies": ["IPv4"],
             "ipFamilyPolicy": "SingleStack", "allocateLoadBalancerNodePorts": True,
             "internalTrafficPolicy": "Cluster"},
    "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.205", "ipMode": "VIP"}]}},
}
SERVICE_DUAL_AFFINITY = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "dns", "namespace": "kube-system", "resourceVersion": "300"},
    "spec": {"ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                       {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53}],
             "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
             "type": "ClusterIP", "sessionAffinity": "ClientIP",
             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
             "externalIPs": ["198.51.100.7"], "ipFamilies": ["IPv4", "IPv6"],
             "ipFamilyPolicy": "PreferDualStack", "internalTrafficPolicy": "Local",
             "trafficDistribution": "PreferClose"},
    "status": {"loadBalancer": {}},
}
SERVICE_HEADLESS = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "17"},
    "spec": {"ports": [{"port": 5432, "protocol": "TCP", "targetPort": 5432}],
             "clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP"},
    "status": {"loadBalancer": {}},
}
SERVICE_EXTERNAL_NAME = {
    "kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "ext", "namespace": "shop", "resourceVersion": "18"},
    "spec": {"type": "ExternalName", "externalName": "db.example.com"},
}
KNATIVE_SERVICE = {
    "kind": "Service", "apiVersion": "serving.knative.dev/v1",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {"template": {"spec": {"containers": [{"image": "hello"}]}}},
}
SLICE = {
    "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "web-7xk2p", "generateName": "web-", "namespace": "default",
                 "uid": "5f0e2b8c-3d7a-4c1e-8f6b-0a9d2e4c7b13", "resourceVersion": "184250",
                 "generation": 7, "creationTimestamp": "2025-03-04T10:21:07Z",
                 "labels": {"app": "web",
                            "endpointslice.kubernetes.io/managed-by":
                                "endpointslice-controller.k8s.io",
                            "kubernetes.io/service-name": "web"},
                 "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                 "2025-03-04T10:25:41Z"},
                 "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                      "uid": "8d5c3f0e-7f55-4a4e-9a59-2a3c1b6e0f11",
                                      "controller": True, "blockOwnerDeletion": True}]},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["10.244.1.7"],
                   "conditions": {"ready": True, "serving": True, "terminating": False},
                   "targetRef": {"kind": "Pod", "namespace": "default",
                                 "name": "web-5d9c7b8f6d-x2x9q",
                                 "uid": "c1b7a3d2-9e0f-4b6a-8c5d-2f1e0a9b8c7d"},
                   "nodeName": "kind-worker", "zone": "zone-a",
                   "hints": {"forZones": [{"name": "zone-a"}]}},
                  {"addresses": ["10.244.2.9"],
                   "conditions": {"ready": False, "serving": True, "terminating": True},
                   "nodeName": "node-a", "zone": "zone-b",
                   "hints": {"forZones": [{"name": "zone-b"}], "forNodes": [{"name": "node-a"}]}}],
    "ports": [{"name": "http", "protocol": "TCP", "port": 10080},
              {"name": "https", "protocol": "TCP", "port": 8443, "appProtocol": "https"}],
}
SLICE_V6_EMPTY = {
    "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "dns-v6", "namespace": "kube-system", "resourceVersion": "301",
                 "labels": {"kubernetes.io/service-name": "dns"}},
    "addressType": "IPv6", "endpoints": None, "ports": None,
}
SLICE_FQDN = {
    "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "ext-fqdn", "namespace": "shop", "resourceVersion": "302",
                 "labels": {"kubernetes.io/service-name": "ext"}},
    "addressType": "FQDN", "endpoints": [{"addresses": ["db.example.com"]}],
    "ports": [{"name": "", "port": 5432, "protocol": "TCP"}],
}
NODE = {
    "kind": "Node", "apiVersion": "v1",
    "metadata": {"name": "node-a", "resourceVersion": "500",
                 "labels": {"topology.kubernetes.io/zone": "zone-a"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
             "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]},
    "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                             {"type": "InternalIP", "address": "fc00:f853:ccd:e793::2"},
                             {"type": "ExternalIP", "address": "198.51.100.2"},
                             {"type": "Hostname", "address": "node-a"}]},
}
POD = {
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "coredns-1", "namespace": "kube-system", "resourceVersion": "600",
                 "labels": {"k8s-app": "kube-dns"}},
    "spec": {"nodeName": "node-a", "hostNetwork": False,
             "initContainers": [{"name": "sidecar", "restartPolicy": "Always",
                                 "ports": [{"name": "metrics", "containerPort": 9153}]}],
             "containers": [{"name": "coredns",
                             "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP",
                                        "hostPort": 53, "hostIP": "172.18.0.2"},
                                       {"name": "dns-tcp", "containerPort": 53,
                                        "protocol": "TCP"}]}]},
    "status": {"phase": "Running", "podIP": "10.244.1.3",
               "podIPs": [{"ip": "10.244.1.3"}, {"ip": "fd00:10:244:1::3"}],
               "conditions": [{"type": "Ready", "status": "True"}]},
}
ENDPOINTS = {
    "kind": "Endpoints", "apiVersion": "v1",
    "metadata": {"name": "db", "namespace": "shop", "labels": {"team": "data"}},
    "subsets": [{"addresses": [{"ip": "192.0.2.10", "nodeName": "node-a"}, {"ip": "192.0.2.11"}],
                 "notReadyAddresses": [{"ip": "192.0.2.12"}],
                 "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}],
}

API_OBJECTS = [SERVICE_LB, SERVICE_DUAL_AFFINITY, SERVICE_HEADLESS, SERVICE_EXTERNAL_NAME,
               KNATIVE_SERVICE, SLICE, SLICE_V6_EMPTY, SLICE_FQDN, NODE, POD, ENDPOINTS]


def fixture_documents():
    """(name, document) of every YAML/JSON document in the fixtures and examples."""
    files = sorted((ROOT / "tests/fixtures/manifests").glob("*/*")) + \
        sorted((ROOT / "examples").glob("*.yaml"))
    for path in files:
        if path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # the broken fixtures are manifest seeds only
        for i, doc in enumerate(docs):
            if isinstance(doc, dict):
                yield f"{path.parent.name}-{path.stem}-{i}", doc


def decode_seeds():
    seeds = {}
    for obj in API_OBJECTS:
        seeds[f"api-{obj['kind']}-{obj['metadata']['name']}"] = "-" + compact(obj)
    for name, doc in fixture_documents():
        kind = doc.get("kind", "")
        if kind.endswith("List") and isinstance(doc.get("items"), list):
            item_kind = kind[:-4]
            for i, item in enumerate(doc["items"][:3]):
                byte = KIND_BYTE.get(item_kind, "-")
                seeds[f"{name}-item{i}"] = byte + compact(item)
        elif kind in KIND_BYTE:
            seeds[name] = "-" + compact(doc)
    # A typed list item: no kind, no apiVersion.
    item = {k: v for k, v in SLICE.items() if k not in ("kind", "apiVersion")}
    seeds["api-slice-list-item"] = "E" + compact(item)
    return seeds


def manifest_seeds():
    seeds = {}
    for path in sorted((ROOT / "tests/fixtures/manifests").glob("*/*")) + \
            sorted((ROOT / "examples").glob("*.yaml")):
        if path.suffix in (".yaml", ".yml", ".json"):
            seeds[f"{path.parent.name}-{path.name}"] = path.read_text()
    seeds["alias.yaml"] = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: &l {app: web}}\n"
        "spec:\n  selector: *l\n  clusterIP: 10.96.0.5\n  ports: [{port: 80, targetPort: 0x50}]\n"
        "---\n---\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: {name: n},"
        " spec: {podCIDR: 10.244.0.0/24}}\n")
    return seeds


def watch_seeds():
    def event(kind, obj):
        return compact({"type": kind, "object": obj}) + "\n"

    def bookmark(kind, api_version, rv):
        return compact({"type": "BOOKMARK",
                        "object": {"kind": kind, "apiVersion": api_version,
                                   "metadata": {"resourceVersion": rv,
                                                "creationTimestamp": None}}}) + "\n"

    error_410 = compact({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version: 12345 (184301)", "reason": "Expired",
        "code": 410}}) + "\n"
    error_500 = compact({"type": "ERROR", "object": {"kind": "Status", "code": 500,
                                                     "message": "internal error"}}) + "\n"
    moved = json.loads(json.dumps(SLICE))
    moved["metadata"]["resourceVersion"] = "184251"
    moved["endpoints"] = moved["endpoints"][:1]
    svc_v2 = json.loads(json.dumps(SERVICE_LB))
    svc_v2["metadata"]["resourceVersion"] = "184300"
    svc_v2["spec"]["ports"][0]["port"] = 70000  # rejected: the previous version stays
    unlabelled = json.loads(json.dumps(SLICE))
    unlabelled["metadata"]["resourceVersion"] = "184252"
    del unlabelled["metadata"]["labels"]["kubernetes.io/service-name"]
    node_v2 = json.loads(json.dumps(NODE))
    node_v2["metadata"]["resourceVersion"] = "501"
    seeds = {
        "services": "S\x01" + event("ADDED", SERVICE_LB) + event("ADDED", SERVICE_DUAL_AFFINITY)
        + bookmark("Service", "v1", "184299") + event("MODIFIED", svc_v2)
        + event("DELETED", SERVICE_DUAL_AFFINITY) + error_410,
        "services-crlf": "S\x02" + (event("ADDED", SERVICE_HEADLESS) + event(
            "ADDED", SERVICE_EXTERNAL_NAME) + error_500).replace("\n", "\r\n"),
        "endpointslices": "E\x03" + event("ADDED", SLICE) + event("MODIFIED", moved)
        + event("MODIFIED", unlabelled) + bookmark("EndpointSlice", "discovery.k8s.io/v1",
                                                   "184377") + event("DELETED", moved),
        "endpointslices-truncated": "E\x04" + event("ADDED", SLICE_V6_EMPTY)
        + event("ADDED", SLICE)[:200],
        "nodes": "N\x05" + event("ADDED", NODE) + "\n\n" + event("MODIFIED", node_v2)
        + '{"type":"ADDED","object":{"metadata":{"name":"x"}}}\n',
        "pods": "P\x06" + event("ADDED", POD) + '{"type":"NOPE","object":{}}\n'
        + event("ADDED", POD),
        "pods-not-json": "P\x07" + event("ADDED", POD) + '{"type":"ADDED","object":{\n',
    }
    return seeds


def list_seeds():
    def page(kind, items, rv, cont=None):
        md = {"resourceVersion": rv}
        if cont:
            md["continue"] = cont
            md["remainingItemCount"] = 1234
        return compact({"kind": kind + "List", "apiVersion": "v1" if kind != "EndpointSlice"
                        else "discovery.k8s.io/v1", "metadata": md, "items": items})

    def item(obj):
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}

    services = json.loads((ROOT / "tests/fixtures/manifests/realistic/services-list.json")
                          .read_text())
    return {
        "services": "S" + compact(services),
        "services-mixed": "S" + page("Service", [item(SERVICE_LB), item(SERVICE_HEADLESS), 7,
                                                 item(SERVICE_DUAL_AFFINITY)], "184301"),
        "endpointslices-continue": "E" + page(
            "EndpointSlice", [item(SLICE), item(SLICE_V6_EMPTY), item(SLICE_FQDN)], "184301",
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTg0MzAxLCJzdGFydCI6ImRlZmF1bHQvd2ViLTd4azJwXHUwMDAwIn0"),
        "nodes": "N" + page("Node", [item(NODE)], "502"),
        "pods-null": "P" + compact({"kind": "PodList", "apiVersion": "v1",
                                    "metadata": {"resourceVersion": "9"}, "items": None}),
        "pods": "P" + page("Pod", [item(POD)], "601"),
    }


def kubeconfig_seeds():
    base = """apiVersion: v1
kind: Config
clusters:
- name: kind
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUREQmhyTTNNdApjMlZ5ZG1WeUxXTmhRREUzTURBd01EQXdNREF3SGhjTk1qVXdNekEwTURreE1qUTBXaGNOTXpVd016QXlNRGt4Ck1qUTBXakFqTVNFd0h3WURWUVFEREJock0zTXRjMlZ5ZG1WeUxXTmhRREUzTURBd01EQXdNREF3V1RBVEJnY3EKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
    tls-server-name: kubernetes
contexts:
- name: kind
  context:
    cluster: kind
    user: admin
    namespace: default
current-context: kind
users:
- name: admin
  user:
"""
    return {
        "token": base + "    token: eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.e30.c2lnbmF0dXJl\n",
        "client-cert": base + "    client-certificate-data: "
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=\n"
        "    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFCi0tLS0tRU5EIEVDIFBSSVZBVEUgS0VZLS0tLS0K\n",
        "token-file": base + "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
        "exec": base + "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
        "      command: aws\n",
        "insecure": "clusters:\n- name: c\n  cluster: {server: 'http://localhost:8080', "
        "insecure-skip-tls-verify: true, proxy-url: ''}\ncontexts:\n- name: x\n  context: "
        "{cluster: c}\ncurrent-context: x\n",
        "relative-paths": "clusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1\n"
        "    certificate-authority: ca.crt\ncontexts:\n- {name: x, context: {cluster: c, user: u}}\n"
        "users:\n- {name: u, user: {client-certificate: tls.crt, client-key: tls.key}}\n"
        "current-context: x\n",
    }


def write(target, seeds):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, text in seeds.items():
        (d / f"seed-{name}").write_bytes(text.encode())


def main():
    write("decode", decode_seeds())
    write("manifest", manifest_seeds())
    write("watch_stream", watch_seeds())
    write("list_page", list_seeds())
    write("kubeconfig", kubeconfig_seeds())


if __name__ == "__main__":
    main()
