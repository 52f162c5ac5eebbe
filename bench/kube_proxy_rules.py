#!/usr/bin/env python3
"""Write the iptables-restore input kube-proxy (iptables mode) would program for a cluster.

Input is a gen_cluster.py / fake_apiserver.py --preload file.  Output follows the structure of
kube-proxy's iptables proxier (pkg/proxy/iptables/proxier.go, ~v1.31; kube-semantics.md §1.12):

  nat:    KUBE-SERVICES   -d VIP -p tcp --dport P -j KUBE-SVC-X          (one per ClusterIP port)
                          -d LB-IP ... -j KUBE-EXT-X                       (LoadBalancer ingress)
                          -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS  (last)
          KUBE-NODEPORTS  -p tcp --dport NP -j KUBE-EXT-X
          KUBE-SVC-X      ! -s CLUSTER-CIDR -d VIP ... -j KUBE-MARK-MASQ
                          -m statistic --mode random --probability 1/(n-i) -j KUBE-SEP-Y  (n-1 rules)
                          -j KUBE-SEP-Z                                    (last endpoint)
                          (ClientIP affinity: -m recent --rcheck ... per endpoint first)
          KUBE-SVL-X      local endpoints only (externalTrafficPolicy: Local)
          KUBE-EXT-X      masquerade + jump to KUBE-SVC-X (or KUBE-SVL-X for eTP Local)
          KUBE-SEP-Y      -s EP -j KUBE-MARK-MASQ ; -p tcp -j DNAT --to-destination EP:PORT
          KUBE-MARK-MASQ, KUBE-POSTROUTING (MASQUERADE), jumps from PREROUTING/OUTPUT/POSTROUTING
  filter: KUBE-SERVICES / KUBE-EXTERNAL-SERVICES REJECT for services without endpoints,
          KUBE-NODEPORTS health-check ACCEPT, KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-FIREWALL.

Chain names are "KUBE-SVC-" + base32(sha256(servicePortName + protocol))[:16] as in kube-proxy.
Endpoints: ready ones; if none is ready, serving+terminating ones (ProxyTerminatingEndpoints).
Services labelled service.kubernetes.io/service-proxy-name and headless services are skipped,
as kube-proxy's informer selector does.  More than 1000 endpoints -> "large cluster mode": the
per-endpoint comments are dropped (kube-proxy's largeClusterEndpointsThreshold).

As a library: load_model(preload_dict) -> Model; full_restore(model) -> str;
partial_restore(model, changed_service_keys, stale_sep_chains) -> str (what a KEP-3453 partial
sync writes: full filter table, all top-level nat chains in full, only the changed services'
own chains, and -X of chains that went away); nft_ruleset(model) -> str, the `nft -f` input of
kube-proxy's nftables mode (table ip kube-proxy: verdict maps service-ips / service-nodeports,
per-service chains picking an endpoint chain with `numgen random mod N vmap`).

  kube_proxy_rules.py cluster.json > rules.txt
  kube_proxy_rules.py --nft cluster.json > rules.nft
"""

import base64
import hashlib
import ipaddress
import json
import sys

SKIP_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
LARGE_CLUSTER_THRESHOLD = 1000


def _hash16(s):
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def svc_chain(spn, proto):
    return "KUBE-SVC-" + _hash16(spn + proto.lower())


def svl_chain(spn, proto):
    return "KUBE-SVL-" + _hash16(spn + proto.lower())


def ext_chain(spn, proto):
    return "KUBE-EXT-" + _hash16(spn + proto.lower())


def sep_chain(spn, proto, ep):
    return "KUBE-SEP-" + _hash16(spn + proto.lower() + ep)


def probability(n):
    return "%0.10f" % (1.0 / float(n))


class ServicePort:
    __slots__ = ("key", "spn", "proto", "vip", "port", "node_port", "lb_ips", "etp_local",
                 "affinity_s", "target", "endpoints", "local_endpoints", "hc_node_port")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class Model:
    def __init__(self, node_name, cluster_cidr, ports):
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.ports = ports  # list of ServicePort, in service order

    def endpoint_count(self):
        return sum(len(p.endpoints) for p in self.ports)


def _slice_endpoints(slices, port_name, target_port):
    """(ip:port list of usable endpoints, set of node names) for one service port."""
    ready, serving_term = [], []
    for sl in slices:
        port = None
        for sp in sl.get("ports") or []:
            if (sp.get("name") or "") == (port_name or ""):
                port = sp.get("port")
        if port is None:
            port = target_port if isinstance(target_port, int) else None
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            addr = "%s:%d" % (ep["addresses"][0], port)
            entry = (addr, ep.get("nodeName"))
            if cond.get("ready", True):
                ready.append(entry)
            elif cond.get("serving", False) and cond.get("terminating", False):
                serving_term.append(entry)
    chosen = ready if ready else serving_term
    # kube-proxy sorts endpoints by string (EndpointsMap is built from a sorted set)
    chosen.sort()
    return chosen


def load_model(cluster, node_name="node-0", cluster_cidr="10.244.0.0/14"):
    slices_by_svc = {}
    for sl in cluster.get("endpointslices", []):
        md = sl["metadata"]
        labels = md.get("labels") or {}
        if HEADLESS_LABEL in labels or SKIP_LABEL in labels:
            continue
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        key = (md.get("namespace", "default"), labels.get("kubernetes.io/service-name"))
        slices_by_svc.setdefault(key, []).append(sl)
    ports = []
    for svc in cluster.get("services", []):
        md, spec = svc["metadata"], svc["spec"]
        if SKIP_LABEL in (md.get("labels") or {}):
            continue
        vip = spec.get("clusterIP")
        if not vip or vip == "None" or ":" in vip:
            continue
        ns, name = md.get("namespace", "default"), md["name"]
        slices = slices_by_svc.get((ns, name), [])
        lb_ips = [i["ip"] for i in (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
                  if "ip" in i and ":" not in i["ip"]]
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            affinity = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
                "timeoutSeconds", 10800)
        for p in spec.get("ports") or []:
            pname = p.get("name") or ""
            spn = "%s/%s%s" % (ns, name, ":" + pname if pname else "")
            proto = p.get("protocol", "TCP")
            eps = _slice_endpoints(slices, pname, p.get("targetPort", p["port"]))
            ports.append(ServicePort(
                key=(ns, name), spn=spn, proto=proto, vip=vip, port=p["port"],
                node_port=p.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None,
                lb_ips=lb_ips if spec.get("type") == "LoadBalancer" else [],
                etp_local=spec.get("externalTrafficPolicy") == "Local",
                affinity_s=affinity, target=p.get("targetPort"),
                endpoints=[a for a, _ in eps],
                local_endpoints=[a for a, n in eps if n == node_name],
                hc_node_port=spec.get("healthCheckNodePort")))
    return Model(node_name, cluster_cidr, ports)


class _Writer:
    def __init__(self):
        self.chains = []
        self.rules = []

    def chain(self, name):
        self.chains.append(":%s - [0:0]" % name)

    def rule(self, *parts):
        self.rules.append(" ".join(p.strip() for p in parts if p and p.strip()))


def _comment(text):
    return '-m comment --comment "%s"' % text if " " in text else "-m comment --comment %s" % text


def _service_chains(w, p, cidr, large):
    """Per-service nat chains (KUBE-SVC, KUBE-SVL, KUBE-EXT, KUBE-SEP) of one service port."""
    proto = p.proto.lower()
    svc = svc_chain(p.spn, p.proto)
    has_ext = bool(p.node_port or p.lb_ips)
    if not p.endpoints:
        return []
    chains = [svc]
    w.chain(svc)
    seps = [sep_chain(p.spn, p.proto, ep) for ep in p.endpoints]
    for sep in seps:
        w.chain(sep)
    chains += seps
    w.rule("-A", svc, _comment("%s cluster IP" % p.spn), "-m", proto, "-p", proto, "-d", p.vip,
           "--dport", str(p.port), "!", "-s", cidr, "-j", "KUBE-MARK-MASQ")
    _lb_rules(w, svc, p, p.endpoints, seps, large)
    if has_ext:
        ext = ext_chain(p.spn, p.proto)
        w.chain(ext)
        chains.append(ext)
        if p.etp_local:
            svl = svl_chain(p.spn, p.proto)
            w.chain(svl)
            chains.append(svl)
            w.rule("-A", ext, _comment("pod traffic for %s external destinations" % p.spn),
                   "-s", cidr, "-j", svc)
            w.rule("-A", ext, _comment("masquerade LOCAL traffic for %s external destinations" % p.spn),
                   "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
            w.rule("-A", ext, _comment("route LOCAL traffic for %s external destinations" % p.spn),
                   "-m addrtype --src-type LOCAL", "-j", svc)
            w.rule("-A", ext, "-j", svl)
            local_seps = [sep_chain(p.spn, p.proto, ep) for ep in p.local_endpoints]
            if p.local_endpoints:
                _lb_rules(w, svl, p, p.local_endpoints, local_seps, large)
        else:
            w.rule("-A", ext, _comment("masquerade traffic for %s external destinations" % p.spn),
                   "-j KUBE-MARK-MASQ")
            w.rule("-A", ext, "-j", svc)
    for ep, sep in zip(p.endpoints, seps):
        ip = ep.rsplit(":", 1)[0]
        c = "" if large else _comment(p.spn) + " "
        w.rule("-A", sep, c + "-s", ip, "-j", "KUBE-MARK-MASQ")
        recent = ("-m recent --name %s --set " % sep) if p.affinity_s else ""
        w.rule("-A", sep, c + recent + "-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", ep)
    return chains


def _lb_rules(w, chain, p, eps, seps, large):
    if p.affinity_s:
        for ep, sep in zip(eps, seps):
            w.rule("-A", chain, "" if large else _comment("%s -> %s" % (p.spn, ep)),
                   "-m recent --name", sep, "--mask 255.255.255.255 --rcheck --seconds",
                   str(p.affinity_s), "--reap -j", sep)
    n = len(eps)
    for i, (ep, sep) in enumerate(zip(eps, seps)):
        c = "" if large else _comment("%s -> %s" % (p.spn, ep)) + " "
        if i < n - 1:
            w.rule("-A", chain, c + "-m statistic --mode random --probability", probability(n - i),
                   "-j", sep)
        else:
            w.rule("-A", chain, c + "-j", sep)


def _render(model, changed_keys=None, stale_chains=()):
    """changed_keys None: full sync.  Else a partial sync writing only those services' chains."""
    large = model.endpoint_count() > LARGE_CLUSTER_THRESHOLD
    cidr = model.cluster_cidr
    f = _Writer()  # filter table
    n = _Writer()  # nat table
    for c in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
              "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL"):
        f.chain(c)
    for c in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"):
        n.chain(c)
    hc_done = set()
    for p in model.ports:
        proto = p.proto.lower()
        svc = svc_chain(p.spn, p.proto)
        ext = ext_chain(p.spn, p.proto)
        if not p.endpoints:
            f.rule("-A KUBE-SERVICES", _comment("%s has no endpoints" % p.spn), "-m", proto, "-p",
                   proto, "-d", p.vip, "--dport", str(p.port), "-j REJECT")
        else:
            n.rule("-A KUBE-SERVICES", _comment("%s cluster IP" % p.spn), "-m", proto, "-p", proto,
                   "-d", p.vip, "--dport", str(p.port), "-j", svc)
        for ip in p.lb_ips:
            if p.endpoints:
                n.rule("-A KUBE-SERVICES", _comment("%s loadbalancer IP" % p.spn), "-m", proto,
                       "-p", proto, "-d", ip, "--dport", str(p.port), "-j", ext)
            if not p.endpoints or (p.etp_local and not p.local_endpoints):
                f.rule("-A KUBE-EXTERNAL-SERVICES", _comment("%s has no local endpoints" % p.spn),
                       "-m", proto, "-p", proto, "-d", ip, "--dport", str(p.port), "-j DROP")
        if p.node_port:
            if p.endpoints:
                n.rule("-A KUBE-NODEPORTS", _comment(p.spn), "-m", proto, "-p", proto, "--dport",
                       str(p.node_port), "-j", ext)
            if not p.endpoints or (p.etp_local and not p.local_endpoints):
                f.rule("-A KUBE-EXTERNAL-SERVICES", _comment("%s has no local endpoints" % p.spn),
                       "-m addrtype --dst-type LOCAL", "-m", proto, "-p", proto, "--dport",
                       str(p.node_port), "-j DROP")
        if p.hc_node_port and p.etp_local and p.key not in hc_done:
            hc_done.add(p.key)
            f.rule("-A KUBE-NODEPORTS", _comment("%s health check node port" % p.spn),
                   "-m tcp -p tcp --dport", str(p.hc_node_port), "-j ACCEPT")
        if changed_keys is None or p.key in changed_keys:
            _service_chains(n, p, cidr, large)
    n.rule("-A KUBE-SERVICES",
           '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain"',
           "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    n.rule("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000")
    n.rule("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN")
    n.rule("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000")
    n.rule('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"',
           "-j MASQUERADE --random-fully")
    f.rule("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
    f.rule('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT')
    f.rule('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule"',
           "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    f.rule('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections"',
           "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    out = ["*filter"] + f.chains + f.rules + ["COMMIT", "*nat"] + n.chains
    # as kube-proxy: a stale chain is declared (which flushes it) and then deleted
    out += [":%s - [0:0]" % c for c in stale_chains]
    out += ["-X " + c for c in stale_chains]
    out += n.rules + ["COMMIT", ""]
    return "\n".join(out)


def base_rules():
    """The one-time jumps kube-proxy installs with `iptables -I` (ensureChain/ensureRule)."""
    return "\n".join([
        "*filter",
        ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", ":KUBE-FORWARD - [0:0]",
        ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]", ":KUBE-FIREWALL - [0:0]",
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        "-A INPUT -j KUBE-FIREWALL",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A OUTPUT -j KUBE-FIREWALL",
        "COMMIT",
        "*nat",
        ":KUBE-SERVICES - [0:0]", ":KUBE-POSTROUTING - [0:0]",
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "COMMIT", ""])


def full_restore(model):
    return _render(model)


# ------------------------------------------------------------------------------------------------
# nftables mode (pkg/proxy/nftables/proxier.go, ~v1.31; kube-semantics.md §1.12): one table
# "ip kube-proxy"; the first packet of a connection finds its service with one verdict-map lookup
# (service-ips: daddr . proto . dport), then `numgen random mod N vmap` picks the endpoint chain.

NFT_TABLE = "kube-proxy"
_NFT_CHAIN_MAX = 256 - len("external-")  # kube-proxy's chainNameBaseLengthMax


def _nft_hash_truncate(name):
    h = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8] + "-" + name
    return h[:_NFT_CHAIN_MAX - 3] + "..." if len(h) > _NFT_CHAIN_MAX else h


def _nft_port_base(p):
    ns, svc = p.key
    port_name = p.spn.split(":", 1)[1] if ":" in p.spn else ""
    return "%s/%s/%s/%s" % (ns, svc, p.proto.lower(), port_name)


def nft_service_chain(p):
    return "service-" + _nft_hash_truncate(_nft_port_base(p))


def nft_external_chain(p):
    return "external-" + _nft_hash_truncate(_nft_port_base(p))


def nft_endpoint_chain(p, ep):
    ip, port = ep.rsplit(":", 1)
    return "endpoint-" + _nft_hash_truncate("%s__%s/%s" % (_nft_port_base(p), ip, port))


def nft_affinity_set(p, ep):
    ip, port = ep.rsplit(":", 1)
    return "affinity-" + _nft_hash_truncate("%s__%s/%s" % (_nft_port_base(p), ip, port))


def _nft_pick(p, eps, chains, out):
    """Affinity lookups first, then a uniformly random endpoint (numgen ... vmap)."""
    if p.affinity_s:
        for ep in eps:
            out.append("ip saddr @%s goto %s" % (nft_affinity_set(p, ep), nft_endpoint_chain(p, ep)))
    vm = ", ".join("%d : goto %s" % (i, c) for i, c in enumerate(chains))
    out.append("numgen random mod %d vmap { %s }" % (len(chains), vm))


def nft_ruleset(model, service_cidr="10.96.0.0/12", nodeport_ips=("172.18.0.2",)):
    """The `nft -f` input of a full sync: the table, its base chains, sets and maps, and one
    service / external / endpoint chain per service port and endpoint."""
    cidr = model.cluster_cidr
    t = NFT_TABLE
    out = ["add table ip %s { comment \"rules for kube-proxy\" ; }" % t,
           "flush table ip %s" % t]
    rules_out = []  # after every chain and set is declared: nft resolves jumps as it reads

    def chain(name, *rules, base=None):
        out.append("add chain ip %s %s%s" % (t, name, " { %s ; }" % base if base else ""))
        rules_out.extend("add rule ip %s %s %s" % (t, name, r) for r in rules)

    for name, typ, comment in (
            ("cluster-ips", "ipv4_addr", "Active ClusterIPs"),
            ("nodeport-ips", "ipv4_addr", "IPs that accept NodePort traffic")):
        out.append("add set ip %s %s { type %s ; comment \"%s\" ; }" % (t, name, typ, comment))
    for name, typ, comment in (
            ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service",
             "vmap to drop or reject packets to services with no endpoints"),
            ("no-endpoint-nodeports", "inet_proto . inet_service",
             "vmap to drop or reject packets to service nodeports with no endpoints"),
            ("firewall-ips", "ipv4_addr . inet_proto . inet_service",
             "destinations that are subject to LoadBalancerSourceRanges"),
            ("service-ips", "ipv4_addr . inet_proto . inet_service",
             "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
            ("service-nodeports", "inet_proto . inet_service", "NodePort traffic")):
        out.append("add map ip %s %s { type %s : verdict ; comment \"%s\" ; }" % (t, name, typ, comment))
    chain("filter-prerouting", "ct state new jump firewall-check",
          base="type filter hook prerouting priority -110")
    chain("filter-input", "ct state new jump nodeport-endpoints-check",
          "ct state new jump service-endpoints-check", base="type filter hook input priority -110")
    chain("filter-forward", "ct state new jump service-endpoints-check",
          "ct state new jump cluster-ips-check", base="type filter hook forward priority -110")
    chain("filter-output", "ct state new jump service-endpoints-check",
          "ct state new jump firewall-check", base="type filter hook output priority -110")
    chain("filter-output-post-dnat", "ct state new jump cluster-ips-check",
          base="type filter hook output priority -90")
    chain("nat-prerouting", "jump services", base="type nat hook prerouting priority -100")
    chain("nat-output", "jump services", base="type nat hook output priority -100")
    chain("nat-postrouting", "jump masquerading", base="type nat hook postrouting priority 100")
    chain("cluster-ips-check",
          "ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"",
          "ip daddr { %s } drop comment \"Drop traffic to unallocated ClusterIPs\"" % service_cidr)
    chain("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    chain("mark-for-masquerade", "meta mark set meta mark | 0x4000")
    chain("masquerading", "meta mark & 0x4000 == 0 return", "meta mark set meta mark ^ 0x4000",
          "masquerade fully-random")
    chain("nodeport-endpoints-check",
          "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
    chain("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    chain("services", "ip daddr . meta l4proto . th dport vmap @service-ips",
          "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
    chain("reject-chain", "reject")

    cluster_ips, service_ips, nodeports, no_ep, no_ep_np = set(), [], [], [], []
    for p in model.ports:
        proto = p.proto.lower()
        cluster_ips.add(p.vip)
        has_ext = bool(p.node_port or p.lb_ips)
        if not p.endpoints:
            no_ep.append("%s . %s . %d : goto reject-chain" % (p.vip, proto, p.port))
            for ip in p.lb_ips:
                no_ep.append("%s . %s . %d : goto reject-chain" % (ip, proto, p.port))
            if p.node_port:
                no_ep_np.append("%s . %d : goto reject-chain" % (proto, p.node_port))
            continue
        svc = nft_service_chain(p)
        eps = p.endpoints
        chains = [nft_endpoint_chain(p, ep) for ep in eps]
        if p.affinity_s:  # the service chain reads them: declared first
            for ep in eps:
                out.append("add set ip %s %s { type ipv4_addr ; flags dynamic,timeout ; timeout %ds ; }"
                           % (t, nft_affinity_set(p, ep), p.affinity_s))
        rules = ["ip daddr %s %s dport %d ip saddr != %s jump mark-for-masquerade" % (p.vip, proto, p.port, cidr)]
        _nft_pick(p, eps, chains, rules)
        chain(svc, *rules)
        service_ips.append("%s . %s . %d : goto %s" % (p.vip, proto, p.port, svc))
        for ep, c in zip(eps, chains):
            ip, port = ep.rsplit(":", 1)
            rules = ["ip saddr %s jump mark-for-masquerade" % ip]
            if p.affinity_s:
                rules.append("update @%s { ip saddr }" % nft_affinity_set(p, ep))
            rules.append("meta l4proto %s dnat to %s:%s" % (proto, ip, port))
            chain(c, *rules)
        if not has_ext:
            continue
        ext = nft_external_chain(p)
        if p.etp_local:
            rules = ["ip saddr %s goto %s comment \"short-circuit pod traffic\"" % (cidr, svc),
                     "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"",
                     "fib saddr type local goto %s comment \"short-circuit local traffic\"" % svc]
            local = [nft_endpoint_chain(p, ep) for ep in p.local_endpoints]
            if local:
                _nft_pick(p, p.local_endpoints, local, rules)
            else:
                rules.append("drop")
            chain(ext, *rules)
        else:
            chain(ext, "jump mark-for-masquerade", "goto %s" % svc)
        for ip in p.lb_ips:
            service_ips.append("%s . %s . %d : goto %s" % (ip, proto, p.port, ext))
        if p.node_port:
            nodeports.append("%s . %d : goto %s" % (proto, p.node_port, ext))

    out.extend(rules_out)

    def elements(name, items):
        for i in range(0, len(items), 1000):
            out.append("add element ip %s %s { %s }" % (t, name, ", ".join(items[i:i + 1000])))

    elements("cluster-ips", sorted(cluster_ips))
    elements("nodeport-ips", list(nodeport_ips))
    elements("service-ips", service_ips)
    elements("service-nodeports", nodeports)
    elements("no-endpoint-services", no_ep)
    elements("no-endpoint-nodeports", no_ep_np)
    return "\n".join(out) + "\n"


def partial_restore(model, changed_keys, stale_chains=()):
    return _render(model, set(changed_keys), stale_chains)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cluster", help="gen_cluster.py output")
    ap.add_argument("--node-name", default="node-0")
    ap.add_argument("--cluster-cidr", default="10.244.0.0/14")
    ap.add_argument("--base", action="store_true", help="print only the one-time base jumps")
    ap.add_argument("--nft", action="store_true", help="nftables mode: print the `nft -f` input")
    a = ap.parse_args(argv)
    ipaddress.ip_network(a.cluster_cidr)
    if a.base:
        sys.stdout.write(base_rules())
        return 0
    with open(a.cluster) as fh:
        model = load_model(json.load(fh), a.node_name, a.cluster_cidr)
    text = nft_ruleset(model) if a.nft else full_restore(model)
    sys.stdout.write(text)
    print("kube_proxy_rules: %d service ports, %d endpoints, %d lines" %
          (len(model.ports), model.endpoint_count(), text.count("\n")), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
