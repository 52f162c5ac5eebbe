#!/usr/bin/python3
"""Manifests of the north-south e2e test (test_northsouth.sh), one JSON object per file.

    northsouth_manifests.py --dir DIR --staging DIR [--src-ranges allow|deny] [--only NAME...]

Writes the same cluster into DIR for every node (each agent gets its own directory and
--node-name; the Nodes are in every copy, each agent uses the one named like itself): Nodes
ns-node1 / ns-node2, Pods n1p1 n1p2 (ns-node1) n2p1 n2p2 (ns-node2; n2p2 has hostPorts
18080/TCP -> 8080 and 18053/UDP -> 5353), and these dual-stack LoadBalancer Services (ports
http 80/TCP -> 8080 and dns 53/UDP -> 5353 unless noted):

  np         nodePorts 30080/30053, LB 192.168.60.10 fd60::10, externalIPs 192.168.60.20
             fd60::20; backends n1p1 (node1), n2p1 (node2)
  np-local   externalTrafficPolicy Local, healthCheckNodePort 30300, nodePorts 30180/30153,
             LB 192.168.60.30 fd60::30; backend n2p2 (node2 only)
  np-src     loadBalancerSourceRanges (allow: 192.168.50.1/32 fd50::1/128, the client;
             deny: 10.99.0.0/16 fd99::/64), nodePorts 30280/30253, LB 192.168.60.40
             fd60::40; backends n1p1, n2p1
  np-all     nodePorts 30380/30353, LB 192.168.60.50 fd60::50; backends all four pods
  np-remote  nodePorts 30480/30453, LB 192.168.60.60 fd60::60; backend n2p1 only

Every file is written to --staging first and moved into --dir (atomic for the agent's
inotify watch). --only NAME (repeatable) writes only the file NAME.json (e.g. --only
svc-np-src).
"""

import argparse
import json
import os

POD_CIDR = {1: ("10.201.1.0/24", "fd01:1::/64"), 2: ("10.201.2.0/24", "fd01:2::/64")}
NODE_IP = {1: ("192.168.50.11", "fd50::11"), 2: ("192.168.50.12", "fd50::12")}
PODS = {  # name -> node index, pod index on it
    "n1p1": (1, 1), "n1p2": (1, 2), "n2p1": (2, 1), "n2p2": (2, 2),
}
HOST_PORTS = {"n2p2": [(18080, 8080, "TCP"), (18053, 5353, "UDP")]}


def pod_ips(name):
    n, i = PODS[name]
    return f"10.201.{n}.{10 + i}", f"fd01:{n}::{10 + i}"


def node_name(n):
    return f"ns-node{n}"


def node_obj(n):
    v4, v6 = NODE_IP[n]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(n),
                     "labels": {"kubernetes.io/hostname": node_name(n),
                                "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": POD_CIDR[n][0], "podCIDRs": list(POD_CIDR[n])},
        "status": {"addresses": [{"type": "InternalIP", "address": v4},
                                 {"type": "InternalIP", "address": v6},
                                 {"type": "Hostname", "address": node_name(n)}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod_obj(name):
    n, _ = PODS[name]
    ports = [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
             {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]
    for hp, cp, proto in HOST_PORTS.get(name, []):
        for p in ports:
            if p["containerPort"] == cp and p["protocol"] == proto:
                p["hostPort"] = hp
    ips = pod_ips(name)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "ns-e2e"}},
        "spec": {"nodeName": node_name(n), "restartPolicy": "Always",
                 "containers": [{"name": "server", "image": "sluice-e2e/podserver:1",
                                 "ports": ports}]},
        "status": {"phase": "Running", "hostIP": NODE_IP[n][0],
                   "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


# name: (clusterIPs, nodePort http, nodePort dns, LB ips, externalIPs, backends, extra spec)
SERVICES = {
    "np": (("10.96.60.10", "fd00:96::60:10"), 30080, 30053,
           ("192.168.60.10", "fd60::10"), ("192.168.60.20", "fd60::20"),
           ("n1p1", "n2p1"), {}),
    "np-local": (("10.96.60.30", "fd00:96::60:30"), 30180, 30153,
                 ("192.168.60.30", "fd60::30"), (), ("n2p2",),
                 {"externalTrafficPolicy": "Local", "healthCheckNodePort": 30300}),
    "np-src": (("10.96.60.40", "fd00:96::60:40"), 30280, 30253,
               ("192.168.60.40", "fd60::40"), (), ("n1p1", "n2p1"), {}),
    "np-all": (("10.96.60.50", "fd00:96::60:50"), 30380, 30353,
               ("192.168.60.50", "fd60::50"), (), ("n1p1", "n1p2", "n2p1", "n2p2"), {}),
    "np-remote": (("10.96.60.60", "fd00:96::60:60"), 30480, 30453,
                  ("192.168.60.60", "fd60::60"), (), ("n2p1",), {}),
}
SRC_RANGES = {"allow": ["192.168.50.1/32", "fd50::1/128"],
              "deny": ["10.99.0.0/16", "fd99::/64"]}


def service_obj(name, src_ranges):
    cips, np_http, np_dns, lbs, eips, _, extra = SERVICES[name]
    spec = {
        "type": "LoadBalancer",
        "selector": {"app": name},
        "clusterIP": cips[0], "clusterIPs": list(cips),
        "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP",
                   "nodePort": np_http},
                  {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP",
                   "nodePort": np_dns}],
        "externalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": True,
        "sessionAffinity": "None",
    }
    spec.update(extra)
    if eips:
        spec["externalIPs"] = list(eips)
    if name == "np-src":
        spec["loadBalancerSourceRanges"] = SRC_RANGES[src_ranges]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in lbs]}},
    }


def slice_obj(name, fam):
    backends = SERVICES[name][5]
    eps = []
    for b in backends:
        n, _ = PODS[b]
        eps.append({"addresses": [pod_ips(b)[0 if fam == 4 else 1]],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": node_name(n),
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": b}})
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-ipv{fam}", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": name,
                                "endpointslice.kubernetes.io/managed-by": "sluice-e2e"}},
        "addressType": f"IPv{fam}",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                  {"name": "dns", "port": 5353, "protocol": "UDP"}],
        "endpoints": eps,
    }


def objects(src_ranges):
    out = {}
    for n in (1, 2):
        out[f"node-{node_name(n)}"] = node_obj(n)
    for p in PODS:
        out[f"pod-{p}"] = pod_obj(p)
    for s in SERVICES:
        out[f"svc-{s}"] = service_obj(s, src_ranges)
        for fam in (4, 6):
            out[f"slice-{s}-ipv{fam}"] = slice_obj(s, fam)
    return out


def write_manifests(objs, directory, staging):
    """Each object as DIR/NAME.json, written in STAGING first and renamed into place, so the
    agent's directory watch never reads half a file (socklb_manifests.py uses it too)."""
    written = []
    for name, obj in objs.items():
        tmp = os.path.join(staging, f"{name}.json.{os.getpid()}")
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(directory, f"{name}.json"))
        written.append(name)
    print(f"{len(written)} manifests in {directory}: {' '.join(written)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--staging", required=True)
    ap.add_argument("--src-ranges", choices=sorted(SRC_RANGES), default="allow")
    ap.add_argument("--only", action="append", default=[])
    args = ap.parse_args()
    objs = {n: o for n, o in objects(args.src_ranges).items() if not args.only or n in args.only}
    write_manifests(objs, args.dir, args.staging)


if __name__ == "__main__":
    main()
