#!/usr/bin/env python3
"""sluice network-namespace benchmark: new-connection latency and request rates through a
ClusterIP, side by side with the pod address itself (the limit), kube-proxy's iptables rules and
kube-proxy's nftables rules, each at 1 / 1k / 10k services.

Run as root (network namespaces, bpffs, tc, iptables, nft); exits 77 otherwise.

  sudo /usr/bin/python3 bench/netns_bench.py                      # 1, 1000, 10000 services
  sudo /usr/bin/python3 bench/netns_bench.py --services 1,1000 --rounds 2 --seconds 1

For each service count, five copies of the same topology are built (the e2e suite's routed
layout, tests/e2e/lib.sh e2e_topology: a node namespace, a client pod and a server pod on veths
with /32 routes), one per variant:

  direct    the client connects straight to the server pod's addresses (the limit);
  sluice    sluice-agent (--manifests, --pod-devices 'veth-p*') translates the ClusterIPs in
            lb_pod_ingress on the pods' host-side veths;
  iptables  kube-proxy's iptables-mode rules for the same services (bench/kube_proxy_rules.py,
            iptables-legacy-restore), in the node namespace;
  nftables  kube-proxy's nftables-mode rules for the same services (nft -f), in the node namespace;
  direct2   direct again, in the latency runs only: the A/A control (its ratio to direct is noise).

Every service has 3 endpoints: 3 addresses of the one server pod (netbench server). The client
(build/bin/netbench) rotates over 64 services spread evenly over the service list, so the
iptables variant walks KUBE-SERVICES to the average depth. Per round: new-connection latency,
one connection at a time, the four variants' connections alternating one by one in one client
(A B C D A B C D ..., sockets made in each variant's client pod; client and servers on one
CPU, so all variants are scheduled alike); then crr with --concurrency connections (new
connections per second) and rr with --concurrency kept connections (requests per second), one
variant at a time in slices of --seconds/4, the variants taking turns slice by slice. Ratios are
per round, then the median over rounds.

Everything lives in namespaces named sbn<pid>-*, a bpffs and a temp dir made here; all of it is
removed on exit, also on failure, Ctrl-C or SIGTERM. Nothing touches the root namespace.
After the rounds of each service count, one more interleaved direct/sluice latency run with the
kernel's BPF run-time statistics on (BPF_ENABLE_STATS; every BPF program on the machine pays two
clock reads per run meanwhile, hence outside the measured rounds; --no-run-stats skips it) says
what lb_pod_ingress itself costs per packet in this path and how many times a connection runs it.

Output: netns_rounds.csv, netns.csv and netns_runtime.csv in --out-dir, a summary on stdout.
"""

import argparse
import ctypes
import csv
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import kube_proxy_rules as kpr  # noqa: E402

LIB_SH = os.path.join(REPO, "tests", "e2e", "lib.sh")
VARIANTS = ("direct", "sluice", "iptables", "nftables")
# A second copy of `direct`, in the latency runs only: the A/A control. Its ratio to `direct` is
# what noise alone does to a ratio on this machine.
CONTROL = "direct2"
SHORT = {"direct": "dir", "direct2": "dr2", "sluice": "slu", "iptables": "ipt", "nftables": "nft"}
CLIENT_IP = "10.244.1.11"                                   # pod1 in lib.sh's routed layout
SERVER_IPS = ("10.244.1.12", "10.244.1.21", "10.244.1.22")  # pod2 and two more addresses
SERVER_PORT = 8080
VIP_BASE = 0x0A60000A                                       # 10.96.0.10: service i = base + i
TARGETS_MAX = 64
RATE_SLICES = 4                                             # per variant and round
CLUSTER_CIDR = "10.244.0.0/14"
NODE_NAME = "bench-node"


class BenchError(Exception):
    pass


def log(msg):
    print("[netns %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def ip4(v):
    return "%d.%d.%d.%d" % (v >> 24 & 255, v >> 16 & 255, v >> 8 & 255, v & 255)


def run(cmd, timeout=120, check=True, **kw):
    r = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise BenchError("%s -> %d: %s" % (" ".join(cmd)[:200], r.returncode,
                                           (r.stderr or r.stdout).strip()[-800:]))
    return r


def cluster(n):
    """n ClusterIP services with 3 endpoints each, shaped like gen_cluster.py's output."""
    services, slices = [], []
    for i in range(n):
        name = "svc-%d" % i
        services.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"type": "ClusterIP", "clusterIP": ip4(VIP_BASE + i), "clusterIPs": [ip4(VIP_BASE + i)],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": SERVER_PORT, "protocol": "TCP"}]}})
        slices.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name + "-1", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "sluice-bench"}},
            "ports": [{"name": "http", "port": SERVER_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": NODE_NAME} for a in SERVER_IPS]})
    return {"services": services, "endpointslices": slices, "nodes": [], "pods": [], "endpoints": []}


class Bench:
    def __init__(self, args):
        self.a = args
        self.prefix = "sbn%d-" % os.getpid()
        self.tmp = tempfile.mkdtemp(prefix="sluice-netns-bench.")
        self.procs = []          # Popen objects started here
        self.bpffs = []          # mounted here
        self.agent_ns = []       # node namespaces where sluice-agent ran (for --cleanup)
        self.rows = []
        self.insitu = []         # run_time_stats() per service count
        self.cleaned = False

    # ------------------------------------------------------------------ namespaces
    def ns(self, variant, what):
        return "%s%s-%s" % (self.prefix, SHORT[variant], what)

    def pin(self):
        """Client and servers on one CPU (the last): every variant is scheduled alike whatever else
        runs on the machine, and no answer waits for a wake-up on another CPU (in a VM an
        inter-processor interrupt through the hypervisor, tens of us). Unpinned, an A/A pair
        differed by up to 40% on a busy machine; client and servers on different CPUs doubled the
        latency; on one CPU the A/A pair stays within 1-2%."""
        return ["taskset", "-c", str((os.cpu_count() or 1) - 1)]

    def nsexec(self, ns, *cmd):
        return ["ip", "netns", "exec", ns] + list(cmd)

    def topology(self, variant):
        """The e2e routed layout with 2 pods (pod1 client, pod2 server), via lib.sh itself."""
        pfx = "%s%s-" % (self.prefix, SHORT[variant])
        run(["bash", "-c", 'source "$1" >/dev/null && E2E_PREFIX="$2" && e2e_topology routed 2',
             "netns-bench", LIB_SH, pfx], timeout=60)
        node, srv = pfx + "node", pfx + "pod2"
        for extra in SERVER_IPS[1:]:
            run(["ip", "-n", srv, "addr", "add", extra + "/32", "dev", "eth0"])
            run(["ip", "-n", node, "route", "add", extra + "/32", "dev", "veth-p2"])

    def start(self, cmd, name):
        logf = open(os.path.join(self.tmp, name + ".log"), "w")
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def start_server(self, variant):
        ready = os.path.join(self.tmp, "ready-" + variant)
        if os.path.exists(ready):
            os.unlink(ready)
        p = self.start(self.pin() + self.nsexec(self.ns(variant, "pod2"), self.a.netbench, "server", "--port",
                                   str(SERVER_PORT), "--ready-file", ready, "--max-seconds", "3600"),
                       "server-" + variant)
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError("netbench server in %s did not start" % variant)
            time.sleep(0.02)

    # ------------------------------------------------------------------ variants
    def setup_sluice(self, n, model_cluster):
        node = self.ns("sluice", "node")
        mdir = os.path.join(self.tmp, "manifests-%d" % n)
        os.makedirs(mdir)
        objs = model_cluster["services"] + model_cluster["endpointslices"]
        for i in range(0, len(objs), 2000):
            with open(os.path.join(mdir, "objects-%05d.json" % i), "w") as fh:
                json.dump({"apiVersion": "v1", "kind": "List", "items": objs[i:i + 2000]}, fh)
        fs = os.path.join(self.tmp, "bpffs-%d" % n)
        os.makedirs(fs)
        run(["mount", "-t", "bpf", "bpf", fs])
        self.bpffs.append(fs)
        root = os.path.join(fs, "sluice")
        t = time.monotonic()
        self.agent_ns.append((node, root))
        agent = self.start(self.nsexec(node, self.a.agent, "--manifests", mdir, "--pod-devices", "veth-p*",
                                       "--bpffs-root", root, "--node-name", NODE_NAME),
                           "agent-%d" % n)
        logf = os.path.join(self.tmp, "agent-%d.log" % n)
        deadline = time.monotonic() + 120
        want = ("synced generation=", "frontends=%d " % n)
        while True:
            with open(logf) as fh:
                text = fh.read()
            if (any(all(w in line for w in want) for line in text.splitlines())
                    and "attached lb_pod_ingress to veth-p1 " in text and "attached lb_pod_ingress to veth-p2 " in text):
                break
            if agent.poll() is not None or time.monotonic() > deadline:
                raise BenchError("sluice-agent did not program %d services and attach (log %s):\n%s"
                                 % (n, logf, text[-2000:]))
            time.sleep(0.05)
        return time.monotonic() - t

    def setup_iptables(self, n, model):
        node = self.ns("iptables", "node")
        base = os.path.join(self.tmp, "ipt-base.rules")
        full = os.path.join(self.tmp, "ipt-full-%d.rules" % n)
        with open(base, "w") as fh:
            fh.write(kpr.base_rules())
        with open(full, "w") as fh:
            fh.write(kpr.full_restore(model))
        t = time.monotonic()
        for path, extra in ((base, []), (full, ["--noflush"])):
            with open(path) as fh:
                run(self.nsexec(node, "iptables-legacy-restore", "-w", *extra), timeout=600, stdin=fh)
        return time.monotonic() - t

    def setup_nftables(self, n, model):
        node = self.ns("nftables", "node")
        path = os.path.join(self.tmp, "nft-%d.nft" % n)
        with open(path, "w") as fh:
            fh.write(kpr.nft_ruleset(model, service_cidr="10.96.0.0/12", nodeport_ips=()))
        t = time.monotonic()
        run(self.nsexec(node, "nft", "-f", path), timeout=600)
        return time.monotonic() - t

    def targets(self, variant, n):
        if variant in ("direct", CONTROL):
            return ",".join("%s:%d" % (a, SERVER_PORT) for a in SERVER_IPS)
        k = min(n, TARGETS_MAX)
        return ",".join("%s:80" % ip4(VIP_BASE + i * n // k) for i in range(k))

    def client(self, variants, n, mode, concurrency, count, seconds):
        """netbench in the first variant's client pod; with several variants their connections
        alternate one by one (sockets made in each variant's client pod). One result per variant."""
        groups = []
        for v in variants:
            groups += ["--targets", "%s@/run/netns/%s@%s" % (v, self.ns(v, "pod1"), self.targets(v, n))]
        cmd = self.pin() + self.nsexec(self.ns(variants[0], "pod1"), self.a.netbench, mode, *groups, "--concurrency",
                          str(concurrency), "--count", str(count * len(variants)), "--seconds", str(seconds))
        r = run(cmd, timeout=seconds + 60, check=False)
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        if r.returncode != 0 or len(lines) != len(variants):
            raise BenchError("netbench %s via %s (%d services) failed: %s %s"
                             % (mode, ",".join(variants), n, r.stdout.strip()[-300:], r.stderr.strip()[-500:]))
        return {x["group"]: x for x in lines}

    # ------------------------------------------------------------------ one service count
    def run_scale(self, n, round_base):
        a = self.a
        log("%d services: building 5 copies of the topology" % n)
        for v in VARIANTS + (CONTROL,):
            self.topology(v)
            self.start_server(v)
        c = cluster(n)
        model = kpr.load_model(c, NODE_NAME, CLUSTER_CIDR)
        setup = {"sluice": self.setup_sluice(n, c), "iptables": self.setup_iptables(n, model),
                 "nftables": self.setup_nftables(n, model)}
        log("%d services programmed: %s" % (n, ", ".join("%s %.2f s" % kv for kv in setup.items())))
        # A first connection through each variant proves the path before anything is timed.
        for v in VARIANTS + (CONTROL,):
            self.client([v], n, "crr", 1, 20, 10)
        for r in range(a.rounds):
            order = VARIANTS[r % 4:] + VARIANTS[:r % 4]
            # Latency: the variants' connections interleaved one by one in one client.
            lat_order = order + (CONTROL,)
            res = self.client(lat_order, n, "crr", 1, a.conns, 60)
            for v in lat_order:
                self.record(round_base + r, n, v, "crr", 1, res[v])
            # Rates: one variant at a time (they would share the CPUs), in RATE_SLICES slices each,
            # the variants taking turns slice by slice (A B C D A B C D ...).
            for mode in ("crr", "rr"):
                acc = {v: [] for v in order}
                for _ in range(RATE_SLICES):
                    for v in order:
                        acc[v].append(self.client([v], n, mode, a.concurrency, 10 ** 6,
                                                  a.seconds / RATE_SLICES)[v])
                for v in order:
                    sl = acc[v]
                    res = {"answers": sum(x["answers"] for x in sl), "errors": sum(x["errors"] for x in sl),
                           "seconds": round(sum(x["seconds"] for x in sl), 4)}
                    res["rate"] = round(res["answers"] / res["seconds"], 1)
                    for f in ("p50_us", "p90_us", "p99_us", "mean_us"):
                        res[f] = statistics.median(x[f] for x in sl)
                    self.record(round_base + r, n, v, mode, a.concurrency, res)
            log("%d services: round %d/%d done" % (n, r + 1, a.rounds))
        st = self.run_time_stats(n)
        if st:
            self.insitu.append(st)
            log("%d services: lb_pod_ingress %d ns per run, %.1f runs per connection (%.1f us per connection)"
                % (n, st["ns_per_run"], st["runs_per_connection"], st["us_per_connection"]))
        self.teardown()

    def run_time_stats(self, n):
        """Where sluice's share of a connection goes: lb_pod_ingress's own run time in this path,
        from the kernel's BPF run-time statistics, over one more interleaved direct/sluice
        latency run (not one of the measured rounds: the statistics cost every BPF program on
        the machine two clock reads per run while they are on)."""
        nr = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
        if nr is None or self.a.no_run_stats:
            return None
        out = run(self.nsexec(self.ns("sluice", "node"), "tc", "filter", "show", "dev", "veth-p1", "ingress")).stdout
        m = re.search(r" id (\d+)", out)
        if not m:
            raise BenchError("no BPF program on the sluice node's veth-p1:\n" + out)

        def prog():
            j = json.loads(run(["bpftool", "-j", "prog", "show", "id", m.group(1)]).stdout)
            return j.get("run_time_ns", 0), j.get("run_cnt", 0), j.get("bytes_jited")

        libc = ctypes.CDLL(None, use_errno=True)
        attr = (ctypes.c_uint32 * 4)()  # union bpf_attr.enable_stats.type = BPF_STATS_RUN_TIME (0)
        fd = libc.syscall(nr, 32, ctypes.byref(attr), ctypes.sizeof(attr))  # BPF_ENABLE_STATS
        if fd < 0:
            log("BPF_ENABLE_STATS failed (errno %d): no run-time statistics" % ctypes.get_errno())
            return None
        try:
            t0, c0, jited = prog()
            res = self.client(["direct", "sluice"], n, "crr", 1, self.a.conns, 60)
            t1, c1, _ = prog()
        finally:
            os.close(fd)  # statistics off again (unless someone else holds them on)
        runs = c1 - c0
        return {"services": n, "connections": res["sluice"]["answers"], "program_runs": runs,
                "runs_per_connection": round(runs / max(1, res["sluice"]["answers"]), 2),
                "ns_per_run": round((t1 - t0) / max(1, runs)),
                "us_per_connection": round((t1 - t0) / max(1, res["sluice"]["answers"]) / 1e3, 2),
                "direct_p50_us": res["direct"]["p50_us"], "sluice_p50_us": res["sluice"]["p50_us"],
                "bytes_jited": jited}

    def record(self, rnd, n, variant, mode, conc, res):
        self.rows.append({"round": rnd, "services": n, "variant": variant, "mode": mode, "concurrency": conc,
                          **{k: res[k] for k in ("answers", "errors", "seconds", "rate", "p50_us", "p90_us",
                                                 "p99_us", "mean_us")}})

    def teardown(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []
        for node, root in self.agent_ns:
            if os.path.exists("/run/netns/" + node):
                run(self.nsexec(node, self.a.agent, "--cleanup", "--bpffs-root", root), timeout=60, check=False)
        self.agent_ns = []
        for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.prefix):
                for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                run(["ip", "netns", "del", name], check=False)
        for fs in reversed(self.bpffs):
            if run(["umount", fs], check=False).returncode != 0:
                run(["umount", "-l", fs], check=False)
        self.bpffs = []

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        self.teardown()
        if self.a.keep_tmp:
            log("logs kept in %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ results
    def summarise(self):
        out = []
        keys = sorted({(r["services"], r["mode"], r["concurrency"]) for r in self.rows})
        for n, mode, conc in keys:
            rows = [r for r in self.rows if (r["services"], r["mode"], r["concurrency"]) == (n, mode, conc)]
            rounds = sorted({r["round"] for r in rows})
            by = {(r["round"], r["variant"]): r for r in rows}
            for v in VARIANTS + (CONTROL,):
                mine = [by[(k, v)] for k in rounds if (k, v) in by]
                if not mine:
                    continue
                s = {"services": n, "variant": v, "mode": mode, "concurrency": conc, "rounds": len(mine)}
                for f in ("rate", "p50_us", "p90_us", "p99_us", "mean_us"):
                    s[f] = round(statistics.median(x[f] for x in mine), 1)
                    for ref in ("direct", "iptables"):
                        ratios = [by[(k, v)][f] / by[(k, ref)][f] for k in rounds
                                  if (k, v) in by and (k, ref) in by and by[(k, ref)][f] > 0]
                        s["%s_vs_%s" % (f, ref)] = round(statistics.median(ratios), 3) if ratios else None
                s["errors"] = sum(x["errors"] for x in mine)
                out.append(s)
        return out

    def write(self, summary):
        if not self.a.out_dir:
            return
        os.makedirs(self.a.out_dir, exist_ok=True)
        with open(os.path.join(self.a.out_dir, "netns_rounds.csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.rows[0].keys()))
            w.writeheader()
            w.writerows(self.rows)
        with open(os.path.join(self.a.out_dir, "netns.csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(summary[0].keys()))
            w.writeheader()
            w.writerows(summary)
        if self.insitu:
            with open(os.path.join(self.a.out_dir, "netns_runtime.csv"), "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(self.insitu[0].keys()))
                w.writeheader()
                w.writerows(self.insitu)

    def main(self):
        for i, n in enumerate(self.a.services):
            self.run_scale(n, i * self.a.rounds)
        summary = self.summarise()
        self.write(summary)
        print("%-8s %-9s %-4s %4s %10s %9s %9s %8s %8s" % ("services", "variant", "mode", "conc", "rate/s",
                                                            "p50_us", "p99_us", "p50/dir", "p50/ipt"))
        for s in summary:
            print("%-8d %-9s %-4s %4d %10.0f %9.1f %9.1f %8s %8s" % (
                s["services"], s["variant"], s["mode"], s["concurrency"], s["rate"], s["p50_us"], s["p99_us"],
                s["p50_us_vs_direct"], s["p50_us_vs_iptables"]))
        return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--services", default="1,1000,10000", help="service counts, comma separated")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per service count")
    ap.add_argument("--conns", type=int, default=1000, help="connections of the latency run")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each rate run")
    ap.add_argument("--concurrency", type=int, default=4, help="connections in flight in the rate runs")
    ap.add_argument("--out-dir", default="", help="write netns_rounds.csv and netns.csv here")
    ap.add_argument("--agent", default=os.path.join(REPO, "build", "bin", "sluice-agent"))
    ap.add_argument("--netbench", default=os.path.join(REPO, "build", "bin", "netbench"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the logs and generated rules")
    ap.add_argument("--no-run-stats", action="store_true",
                    help="skip the extra run with the kernel's BPF run-time statistics on")
    a = ap.parse_args(argv)
    a.services = [int(x) for x in a.services.split(",")]
    if any(n < 1 or n > 60000 for n in a.services) or a.rounds < 1:
        ap.error("services must be 1..60000, rounds >= 1")
    return a


def main(argv=None):
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("netns_bench.py needs root (network namespaces, bpffs, tc, iptables, nft): skipped")
        return 77
    for tool in ("ip", "tc", "iptables-legacy-restore", "nft", "mount", "bpftool", "taskset"):
        if not shutil.which(tool):
            print("netns_bench.py: '%s' not found (bench/run installs iptables and nftables)" % tool,
                  file=sys.stderr)
            return 1
    for b in (a.agent, a.netbench):
        if not os.access(b, os.X_OK):
            print("netns_bench.py: %s not found (build first)" % b, file=sys.stderr)
            return 1
    bench = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return bench.main()
    except (BenchError, subprocess.TimeoutExpired, KeyboardInterrupt) as e:
        log("FAILED: %s" % e)
        a.keep_tmp = True
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
