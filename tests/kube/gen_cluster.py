#!/usr/bin/env python3
"""Generate a big, realistic cluster as a --preload file for fake_apiserver.py.

Output: {"services":[...], "endpointslices":[...], "nodes":[...], "pods":[], "endpoints":[]}
with objects shaped like real kube-apiserver output (kube-semantics.md section 3.8).
Deterministic for a given --seed and arguments.

  gen_cluster.py -o cluster.json                       # 10000 services, 100000 endpoints
  gen_cluster.py --services 100 --endpoints 1000 --dual-stack --managed-fields -o small.json

Services get ClusterIPs from 10.96.0.0/12 (and fd00:96::/108 with --dual-stack), unique.  Each
service's endpoints are split into EndpointSlices of at most --per-slice (100) endpoints, one
slice set per address family, with the labels the EndpointSlice controller copies (service
labels + kubernetes.io/service-name + endpointslice.kubernetes.io/managed-by).  Endpoint
addresses come from 10.244.0.0/14 (fd00:10:244::/64 for IPv6).  --distribution even gives every
service endpoints/services endpoints; zipf gives a skewed, more realistic spread.  A small
fraction of services are NodePort, LoadBalancer (eTP Local), ClientIP affinity, headless or
carry a service-proxy-name label (--plain turns that variety off).
"""

import argparse
import ipaddress
import json
import random
import sys
import uuid

SVC_NET4 = ipaddress.ip_network("10.96.0.0/12")
SVC_NET6 = ipaddress.ip_network("fd00:96::/108")
POD4 = int(ipaddress.ip_address("10.244.0.0"))
POD6 = int(ipaddress.ip_address("fd00:10:244::"))
TS = "2025-03-04T10:21:07Z"


def det_uuid(rnd):
    return str(uuid.UUID(int=rnd.getrandbits(128), version=4))


def managed_fields(manager, api_version, fields):
    return [{"manager": manager, "operation": "Update", "apiVersion": api_version, "time": TS,
             "fieldsType": "FieldsV1", "fieldsV1": fields}]


def pod_ip4(i):
    # skip .0 and .255 of each /24 to look like per-node pod CIDRs
    return str(ipaddress.ip_address(POD4 + (i // 254) * 256 + i % 254 + 1))


def pod_ip6(i):
    return str(ipaddress.ip_address(POD6 + i + 1))


def distribute(total, n, how, rnd):
    if n == 0:
        return []
    if how == "even":
        base, extra = divmod(total, n)
        return [base + (1 if i < extra else 0) for i in range(n)]
    weights = [1.0 / (i + 1) ** 0.9 for i in range(n)]
    rnd.shuffle(weights)
    s = sum(weights)
    counts = [int(total * w / s) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % n] += 1
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description="generate a --preload cluster file")
    ap.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=100000)
    ap.add_argument("--per-slice", type=int, default=100)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=1, help="Node objects (endpoints spread over them)")
    ap.add_argument("--node-prefix", default="node-")
    ap.add_argument("--dual-stack", action="store_true")
    ap.add_argument("--managed-fields", action="store_true", help="add managedFields noise")
    ap.add_argument("--distribution", choices=["even", "zipf"], default="even")
    ap.add_argument("--plain", action="store_true", help="only ClusterIP services, no special cases")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.services > SVC_NET4.num_addresses - 16:
        ap.error("too many services for 10.96.0.0/12")

    rnd = random.Random(a.seed)
    offsets = rnd.sample(range(10, SVC_NET4.num_addresses - 1), a.services)
    nodeports = rnd.sample(range(30000, 32768), min(2700, a.services)) if a.services else []
    zones = ["zone-a", "zone-b", "zone-c"]
    nodes = []
    for k in range(max(1, a.nodes)):
        name = f"{a.node_prefix}{k}"
        nodes.append({
            "metadata": {"name": name, "uid": det_uuid(rnd), "creationTimestamp": TS,
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "topology.kubernetes.io/zone": zones[k % 3]}},
            "spec": {"podCIDR": f"10.244.{k}.0/24", "podCIDRs": [f"10.244.{k}.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.0.{k + 2}"},
                                     {"type": "Hostname", "address": name}]}})
    node_names = [n["metadata"]["name"] for n in nodes]

    counts = distribute(a.endpoints, a.services, a.distribution, rnd)
    services, slices = [], []
    pod_index = 0
    np_i = 0
    for i in range(a.services):
        ns = f"ns-{i % max(1, a.namespaces)}"
        name = f"svc-{i}"
        suid = det_uuid(rnd)
        labels = {"app": name}
        kind = "ClusterIP"
        special = None if a.plain else rnd.random()
        headless = special is not None and special < 0.01
        proxy_name = special is not None and 0.01 <= special < 0.015
        if proxy_name:
            labels["service.kubernetes.io/service-proxy-name"] = "other-proxy"
        nports = 1 if rnd.random() < 0.7 else 2
        ports = []
        for p in range(nports):
            port = {"name": ["http", "https"][p] if nports > 1 else "", "protocol": "TCP",
                    "port": [80, 443][p], "targetPort": [8080, "https-web"][p] if p else 8080 + (i % 3)}
            if not port["name"]:
                del port["name"]
            if p == 1:
                port["appProtocol"] = "https"
            ports.append(port)
        if special is not None and not headless and np_i < len(nodeports):
            if special > 0.97:
                kind = "LoadBalancer"
            elif special > 0.93:
                kind = "NodePort"
        if kind != "ClusterIP":
            for port in ports:
                port["nodePort"] = nodeports[np_i % len(nodeports)]
                np_i += 1
        ip4 = str(SVC_NET4.network_address + offsets[i])
        spec = {"ports": ports, "selector": {"app": name}}
        if headless:
            spec.update({"clusterIP": "None", "clusterIPs": ["None"]})
        elif a.dual_stack:
            ip6 = str(SVC_NET6.network_address + offsets[i] % SVC_NET6.num_addresses)
            spec.update({"clusterIP": ip4, "clusterIPs": [ip4, ip6]})
        else:
            spec.update({"clusterIP": ip4, "clusterIPs": [ip4]})
        spec["type"] = kind
        affinity = special is not None and 0.5 < special < 0.52
        spec["sessionAffinity"] = "ClientIP" if affinity else "None"
        if affinity:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
        if kind in ("NodePort", "LoadBalancer"):
            spec["externalTrafficPolicy"] = "Local" if kind == "LoadBalancer" else "Cluster"
        if kind == "LoadBalancer":
            spec["healthCheckNodePort"] = nodeports[np_i % len(nodeports)]
            np_i += 1
        spec["ipFamilies"] = ["IPv4", "IPv6"] if a.dual_stack else ["IPv4"]
        spec["ipFamilyPolicy"] = "PreferDualStack" if a.dual_stack else "SingleStack"
        if kind == "LoadBalancer":
            spec["allocateLoadBalancerNodePorts"] = True
        spec["internalTrafficPolicy"] = "Cluster"
        status = {"loadBalancer": {}}
        if kind == "LoadBalancer":
            status["loadBalancer"]["ingress"] = [{"ip": f"172.18.255.{i % 250 + 1}", "ipMode": "VIP"}]
        md = {"name": name, "namespace": ns, "uid": suid, "creationTimestamp": TS, "labels": labels}
        if a.managed_fields:
            md["managedFields"] = managed_fields("kubectl-client-side-apply", "v1", {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:ports": {'k:{"port":%d,"protocol":"TCP"}' % p["port"]: {
                    ".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}} for p in ports},
                    "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}})
        services.append({"metadata": md, "spec": spec, "status": status})

        # EndpointSlices
        slice_labels = dict(labels)
        slice_labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
        slice_labels["kubernetes.io/service-name"] = name
        if headless:
            slice_labels["service.kubernetes.io/headless"] = ""
        sports = []
        for p in ports:
            sp = {"name": p.get("name", ""), "protocol": "TCP",
                  "port": p["targetPort"] if isinstance(p["targetPort"], int) else 8443}
            if "appProtocol" in p:
                sp["appProtocol"] = p["appProtocol"]
            sports.append(sp)
        n = counts[i]
        families = ["IPv4", "IPv6"] if a.dual_stack else ["IPv4"]
        first_pod = pod_index
        pod_index += n
        for fam in families:
            for s0 in range(0, max(n, 1), a.per_slice):
                eps = []
                for j in range(first_pod + s0, first_pod + min(n, s0 + a.per_slice)):
                    node = node_names[j % len(node_names)]
                    terminating = (not a.plain) and rnd.random() < 0.02
                    ep = {"addresses": [pod_ip4(j) if fam == "IPv4" else pod_ip6(j)],
                          "conditions": {"ready": not terminating, "serving": True,
                                         "terminating": terminating},
                          "targetRef": {"kind": "Pod", "namespace": ns, "name": f"{name}-{j}",
                                        "uid": det_uuid(rnd)},
                          "nodeName": node,
                          "zone": zones[(j % len(node_names)) % 3]}
                    eps.append(ep)
                suffix = "%05x" % rnd.getrandbits(20)
                smd = {"name": f"{name}-{suffix}", "generateName": f"{name}-", "namespace": ns,
                       "uid": det_uuid(rnd), "generation": 1, "creationTimestamp": TS,
                       "labels": slice_labels,
                       "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": TS},
                       "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                            "uid": suid, "controller": True,
                                            "blockOwnerDeletion": True}]}
                if a.managed_fields:
                    smd["managedFields"] = managed_fields(
                        "kube-controller-manager", "discovery.k8s.io/v1",
                        {"f:addressType": {}, "f:endpoints": {}, "f:metadata": {
                            "f:annotations": {".": {}, "f:endpoints.kubernetes.io/last-change-trigger-time": {}},
                            "f:generateName": {}, "f:labels": {"f:" + k: {} for k in slice_labels},
                            "f:ownerReferences": {'k:{"uid":"%s"}' % suid: {}}}, "f:ports": {}})
                slices.append({"metadata": smd, "addressType": fam,
                               "endpoints": eps if eps else None, "ports": sports})

    out = {"services": services, "endpointslices": slices, "nodes": nodes, "pods": [], "endpoints": []}
    fh = sys.stdout if a.output == "-" else open(a.output, "w")
    json.dump(out, fh, separators=(",", ":"))
    if fh is not sys.stdout:
        fh.close()
    print(f"gen_cluster: {len(services)} services, {len(slices)} endpointslices, "
          f"{sum(counts)} endpoints per family, {len(nodes)} nodes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
