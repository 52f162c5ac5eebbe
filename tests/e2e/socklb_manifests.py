#!/usr/bin/python3
"""Manifests of the socket-LB e2e test (test_socklb.sh), one JSON object per file.

    socklb_manifests.py --dir DIR --staging DIR --layout routed|bridge [--web 2,3,4]

The node e2e-node (InternalIPs = the node netns's own addresses of the layout, so NodePorts
are served there) and these Services, backends on pods of lib.sh's topology (HTTP 8080/TCP,
UDP echo 5353):

  web     LoadBalancer, 10.96.0.10 fd00:96::10, http 80/TCP nodePort 30080, dns 53/UDP
          nodePort 30053, LB IPs 192.0.2.10 2001:db8:b::10, externalIP 203.0.113.20;
          backends --web (default pods 2,3,4)
  sticky  ClusterIP 10.96.0.30, ClientIP affinity (600 s), http 80/TCP; pods 2,3,4
  empty   10.96.0.20 fd00:96::20, http 80/TCP and dns 53/UDP, no endpoints

Each file is written to --staging and moved into --dir (atomic for the agent's inotify).
"""

import argparse

from northsouth_manifests import write_manifests

NODE = "e2e-node"
NODE_IP = {"routed": ("10.244.1.1", "fd00:244:1::1"), "bridge": ("10.244.0.1", "fd00:244::1")}
POD_NET = {"routed": ("10.244.1.", "fd00:244:1::"), "bridge": ("10.244.0.", "fd00:244::")}


def pod_ip(layout, i, fam):
    return POD_NET[layout][0 if fam == 4 else 1] + str(10 + i)


def node_obj(layout):
    v4, v6 = NODE_IP[layout]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "status": {"addresses": [{"type": "InternalIP", "address": v4},
                                 {"type": "InternalIP", "address": v6},
                                 {"type": "Hostname", "address": NODE}]},
    }


def port(name, number, target, proto, node_port=None):
    p = {"name": name, "port": number, "targetPort": target, "protocol": proto}
    if node_port:
        p["nodePort"] = node_port
    return p


def service(name, cips, ports, kind="ClusterIP", extra=None, status=None):
    fams = ["IPv4", "IPv6"][:len(cips)]
    spec = {"type": kind, "selector": {"app": name}, "clusterIP": cips[0],
            "clusterIPs": list(cips), "ipFamilies": fams,
            "ipFamilyPolicy": "RequireDualStack" if len(cips) == 2 else "SingleStack",
            "ports": ports}
    spec.update(extra or {})
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec}
    if status:
        obj["status"] = status
    return obj


def slice_obj(layout, svc, fam, pods, ports):
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-ipv{fam}", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": svc,
                                "endpointslice.kubernetes.io/managed-by": "sluice-e2e"}},
        "addressType": f"IPv{fam}",
        "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports],
        "endpoints": [{"addresses": [pod_ip(layout, i, fam)],
                       "conditions": {"ready": True, "serving": True, "terminating": False},
                       "nodeName": NODE,
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": f"pod{i}"}}
                      for i in pods],
    }


def objects(layout, web):
    both = [("http", 8080, "TCP"), ("dns", 5353, "UDP")]
    out = {"node": node_obj(layout)}
    out["svc-web"] = service(
        "web", ("10.96.0.10", "fd00:96::10"),
        [port("http", 80, 8080, "TCP", 30080), port("dns", 53, 5353, "UDP", 30053)],
        kind="LoadBalancer",
        extra={"externalIPs": ["203.0.113.20"], "externalTrafficPolicy": "Cluster"},
        status={"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"},
                                             {"ip": "2001:db8:b::10", "ipMode": "VIP"}]}})
    for fam in (4, 6):
        out[f"slice-web-ipv{fam}"] = slice_obj(layout, "web", fam, web, both)
    out["svc-sticky"] = service(
        "sticky", ("10.96.0.30",), [port("http", 80, 8080, "TCP")],
        extra={"sessionAffinity": "ClientIP",
               "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}})
    out["slice-sticky-ipv4"] = slice_obj(layout, "sticky", 4, (2, 3, 4), both[:1])
    out["svc-empty"] = service("empty", ("10.96.0.20", "fd00:96::20"),
                               [port("http", 80, 8080, "TCP"), port("dns", 53, 5353, "UDP")])
    out["slice-empty-ipv4"] = slice_obj(layout, "empty", 4, (), both)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--staging", required=True)
    ap.add_argument("--layout", choices=sorted(NODE_IP), default="routed")
    ap.add_argument("--web", default="2,3,4", help="pod indices behind web")
    args = ap.parse_args()
    web = [int(x) for x in args.web.split(",") if x]
    write_manifests(objects(args.layout, web), args.dir, args.staging)


if __name__ == "__main__":
    main()
