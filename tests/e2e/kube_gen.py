#!/usr/bin/python3
"""Realistic Kubernetes objects for the e2e tests (kube_lib.sh: kube_gen, kube_gen_lines), as the
API server would hold them after the controllers ran.

  kube_gen.py KIND key=value...      one object, JSON on stdout
  kube_gen.py --lines                one object per stdin line "KIND key=value ...", one JSON
                                     per stdout line (one process for a whole preload)

  service name= ips=V4[,V6] ports=name:port:target:PROTO[:nodePort],... [type=LoadBalancer
          etp=Local hc=PORT lbip=IP]
  slice   name= svc= fam=4|6 ports=name:port:PROTO,... eps=addr/pod/node/state,... (empty: null)
  node    name= ips=A,B podcidrs=C,D
  pod     name= node= ips=A,B
"""
import json
import sys
import uuid

TS = "2026-01-01T00:00:00Z"


def uid(s):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sluice-e2e/" + s))


def lst(s):
    return [x for x in (s or "").split(",") if x]


def gen(kind, args):
    ts = TS
    ns = args.get("ns", "default")
    if kind == "service":
        name, ips = args["name"], lst(args["ips"])
        typ = args.get("type", "ClusterIP")
        ports = []
        for p in lst(args["ports"]):
            f = p.split(":")
            d = {"name": f[0], "protocol": f[3], "port": int(f[1]), "targetPort": int(f[2])}
            if len(f) > 4:
                d["nodePort"] = int(f[4])
            ports.append(d)
        spec = {"ports": ports, "selector": {"app": name}, "clusterIP": ips[0], "clusterIPs": ips,
                "type": typ, "sessionAffinity": "None",
                "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in ips],
                "ipFamilyPolicy": "RequireDualStack" if len(ips) > 1 else "SingleStack",
                "internalTrafficPolicy": "Cluster"}
        status = {"loadBalancer": {}}
        if typ in ("NodePort", "LoadBalancer"):
            spec["externalTrafficPolicy"] = args.get("etp", "Cluster")
        if typ == "LoadBalancer":
            spec["allocateLoadBalancerNodePorts"] = True
            if "hc" in args:
                spec["healthCheckNodePort"] = int(args["hc"])
            if "lbip" in args:
                status = {"loadBalancer": {"ingress": [{"ip": args["lbip"], "ipMode": "VIP"}]}}
        obj = {"metadata": {"name": name, "namespace": ns, "uid": uid("svc/" + name),
                            "creationTimestamp": ts, "labels": {"app": name},
                            "annotations": {"e2e.sluice.dev/owner": "test_kube.sh"}},
               "spec": spec, "status": status}
    elif kind == "slice":
        name, svc, fam = args["name"], args["svc"], args["fam"]
        eps = []
        for e in lst(args.get("eps")):
            addr, pod, node, st = e.split("/")
            cond = {"ready": {"ready": True, "serving": True, "terminating": False},
                    "nr": {"ready": False, "serving": False, "terminating": False},
                    "term": {"ready": False, "serving": True, "terminating": True}}[st]
            eps.append({"addresses": [addr], "conditions": cond, "nodeName": node,
                        "zone": "zone-a" if node == "e2e-node" else "zone-b",
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": pod,
                                      "uid": uid("pod/" + pod)}})
        ports = []
        for p in lst(args["ports"]):
            pn, port, proto = p.split(":")
            ports.append({"name": pn, "protocol": proto, "port": int(port)})
        obj = {"metadata": {"name": name, "generateName": svc + "-", "namespace": ns,
                            "creationTimestamp": ts,
                            "labels": {"app": svc, "kubernetes.io/service-name": svc,
                                       "endpointslice.kubernetes.io/managed-by":
                                           "endpointslice-controller.k8s.io"},
                            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": ts},
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc,
                                                 "uid": uid("svc/" + svc), "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "addressType": "IPv6" if fam == "6" else "IPv4",
               "endpoints": eps or None, "ports": ports}
    elif kind == "node":
        name, ips = args["name"], lst(args["ips"])
        obj = {"metadata": {"name": name, "uid": uid("node/" + name), "creationTimestamp": ts,
                            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                       "kubernetes.io/arch": "amd64",
                                       "topology.kubernetes.io/zone": "zone-a"}},
               "spec": {"podCIDR": lst(args["podcidrs"])[0], "podCIDRs": lst(args["podcidrs"])},
               "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in ips]
                                       + [{"type": "Hostname", "address": name}],
                          "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                          "message": "kubelet is posting ready status",
                                          "lastHeartbeatTime": ts, "lastTransitionTime": ts}]}}
    elif kind == "pod":
        name, ips = args["name"], lst(args["ips"])
        obj = {"metadata": {"name": name, "namespace": ns, "uid": uid("pod/" + name),
                            "creationTimestamp": ts, "labels": {"app": args.get("app", name)}},
               "spec": {"nodeName": args["node"], "restartPolicy": "Always",
                        "containers": [{"name": "server", "image": "sluice-e2e/podserver:1",
                                        "ports": [{"containerPort": 8080, "protocol": "TCP"},
                                                  {"containerPort": 5353, "protocol": "UDP"}]}]},
               "status": {"phase": "Running", "hostIP": args.get("hostip", ""),
                          "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips],
                          "conditions": [{"type": "Ready", "status": "True"}]}}
    else:
        raise SystemExit(f"kube_gen: unknown kind {kind}")
    return obj


def parse(words):
    return words[0], dict(a.split("=", 1) for a in words[1:])


def main():
    if sys.argv[1:] == ["--lines"]:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(gen(*parse(line.split())), separators=(",", ":")))
        return
    print(json.dumps(gen(*parse(sys.argv[1:])), separators=(",", ":")))


if __name__ == "__main__":
    main()
