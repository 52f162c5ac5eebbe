#!/usr/bin/env python3
"""sluice socket-LB benchmark: connect() latency and request rate through a ClusterIP translated
at the socket, against the same client going straight to the pod address, side by side in one
run (A B A B interleaved rounds). Target: ratio <= 1.05.

Run as root (BPF, network namespaces, bpffs and cgroup2 mounts); exits 77 otherwise.

  sudo /usr/bin/python3 bench/socklb_bench.py                 # 30 rounds x 500 per measure
  sudo /usr/bin/python3 bench/socklb_bench.py --rounds 4 --count 500    # quick
  sudo /usr/bin/python3 bench/socklb_bench.py --json-out /tmp/socklb.json

Topology (routed, Calico-style, nothing linked to the root namespace): netns <p>-node (the
agent, and the "host" client), <p>-c (the client pod, 10.246.0.11) and <p>-s (the server pod,
10.246.0.12, `socklb_bench server 8080`); Service bench 10.96.77.10:80 -> 10.246.0.12:8080.
The agent runs with --pod-devices 'v*' (tc on both pods' veths) and --cgroup on a cgroup of
this run. A = the client in that cgroup connecting to 10.96.77.10:80 (socket-LB translates
connect()); B = the same client outside the cgroup connecting to 10.246.0.12:8080 (no socket
program at all: the limit). Both go through the same tc program on the pod's veth. Measures,
each N times on new connections (build/bin/socklb_bench, C++):
  connect   socket() + connect() time (p50 over N), the client closing with a reset
  request   socket() + connect() + one request + the answer + the server's close; requests/s
            of the one sequential client: 1 / its mean time without the slowest 5% (on a shared
            machine those are scheduling stalls; the wall-clock rate is in the JSON too)
  uconnect  socket() + connect() of a UDP socket: no packet, so A - B is the socket program's
            own cost per call in ns (informative; not a ratio target)
Per round: for the pod and the host client, connect A B, request A B, uconnect A B: many short
measures, so that load from elsewhere hits A and B alike. Latency and rate are medians over
rounds; the ratios are the medians of the per-round ratios, A / B for latency, B / A for the
rate (> 1 = socket-LB slower).
Everything is removed on exit, also on failure or Ctrl-C (processes by pid, the agent's
--cleanup, namespaces, mounts; the cgroup with rmdir only).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VIP, VPORT = "10.96.77.10", 80
POD_C, POD_S, NODE_IP, SPORT = "10.246.0.11", "10.246.0.12", "10.246.0.1", 8080


def log(msg):
    print("[socklb-bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def run(cmd, timeout=60, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


class Bench:
    def __init__(self, args):
        self.args = args
        self.prefix = "slb%d" % os.getpid()
        self.node, self.pod_c, self.pod_s = (self.prefix + s for s in ("-node", "-c", "-s"))
        self.netns = []
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="sluice-socklb-bench.")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.cg_mount = None
        self.cg = None
        self.bpffs_mounted = False
        self.agent = None
        self.agent_log = os.path.join(self.tmp, "agent.log")
        self.expected = 0  # connect() calls socket-LB must have translated (the A measures)

    # ---------------------------------------------------------------- set-up
    def ns(self, name, *cmd, timeout=30):
        return run(["ip", "netns", "exec", name] + list(cmd), timeout=timeout)

    def add_netns(self, name):
        run(["ip", "netns", "add", name])
        self.netns.append(name)
        self.ns(name, "ip", "link", "set", "lo", "up")
        self.ns(name, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0")

    def add_pod(self, pod, dev, addr):
        run(["ip", "-n", self.node, "link", "add", dev, "address", "ee:ee:ee:ee:ee:ee", "type",
             "veth", "peer", "name", "eth0", "netns", pod])
        self.ns(self.node, "sysctl", "-q", "-w", "net.ipv4.conf.%s.proxy_arp=1" % dev)
        run(["ip", "-n", self.node, "link", "set", dev, "up"])
        run(["ip", "-n", self.node, "route", "add", addr + "/32", "dev", dev])
        run(["ip", "-n", pod, "addr", "add", addr + "/32", "dev", "eth0"])
        run(["ip", "-n", pod, "link", "set", "eth0", "up"])
        run(["ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0",
             "onlink"])
        run(["ip", "-n", pod, "neigh", "replace", "169.254.1.1", "lladdr", "ee:ee:ee:ee:ee:ee",
             "dev", "eth0", "nud", "permanent"])

    def manifests(self, d):
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "bench", "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": VIP, "clusterIPs": [VIP],
                        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                        "selector": {"app": "bench"},
                        "ports": [{"name": "http", "port": VPORT, "targetPort": SPORT,
                                   "protocol": "TCP"},
                                  {"name": "udp", "port": VPORT, "targetPort": SPORT,
                                   "protocol": "UDP"}]}}
        eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "bench-ipv4", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "bench"}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": SPORT, "protocol": "TCP"},
                         {"name": "udp", "port": SPORT, "protocol": "UDP"}],
               "endpoints": [{"addresses": [POD_S], "conditions": {"ready": True},
                              "nodeName": "bench-node"}]}
        for name, obj in (("svc.json", svc), ("slice.json", eps)):
            with open(os.path.join(d, name), "w") as f:
                json.dump(obj, f)

    def setup(self):
        a = self.args
        for tool in (a.agent, a.client, a.ctl):
            if not os.access(tool, os.X_OK):
                raise RuntimeError("%s not found (cmake --build build --target sluice-agent "
                                   "socklb_bench)" % tool)
        for name in (self.node, self.pod_c, self.pod_s):
            self.add_netns(name)
        self.ns(self.node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        run(["ip", "-n", self.node, "addr", "add", NODE_IP + "/32", "dev", "lo"])
        self.add_pod(self.pod_c, "vc", POD_C)
        self.add_pod(self.pod_s, "vs", POD_S)

        os.makedirs(self.bpffs)
        run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self.bpffs_mounted = True
        # A cgroup2 mount of our own under /tmp: `ip netns exec` remounts /sys.
        self.cg_mount = tempfile.mkdtemp(prefix="sluice-socklb-bench-cgroup2.")
        run(["mount", "-t", "cgroup2", "none", self.cg_mount])
        self.cg = os.path.join(self.cg_mount, self.prefix)
        os.mkdir(self.cg)

        mdir = os.path.join(self.tmp, "manifests")
        os.makedirs(mdir)
        self.manifests(mdir)
        server_log = open(os.path.join(self.tmp, "server.log"), "w")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.pod_s, a.client, "server", str(SPORT)],
            stdout=server_log, stderr=subprocess.STDOUT))
        agent_log = open(self.agent_log, "w")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.node, a.agent, "--manifests", mdir, "--pod-devices", "v*",
             "--bpffs-root", self.bpffs, "--node-name", "bench-node", "--cgroup", self.cg,
             "--healthz-bind-address", "", "--metrics-bind-address", ""],
            stdout=agent_log, stderr=subprocess.STDOUT)
        self.procs.append(self.agent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.agent_log) as f:
                text = f.read()
            if "socket-LB: lb_sock_release attached" in text:
                break
            if self.agent.poll() is not None:
                raise RuntimeError("agent exited: %s" % text[-2000:])
            time.sleep(0.1)
        else:
            raise RuntimeError("socket-LB not attached within 60 s (log %s)" % self.agent_log)
        log("agent up, socket-LB on %s; server pod %s:%d, VIP %s:%d"
            % (self.cg, POD_S, SPORT, VIP, VPORT))

    # ---------------------------------------------------------------- measuring
    def translated(self):
        """The agent's sock_translated counter (sluicectl stats)."""
        out = run(["ip", "netns", "exec", self.node, self.args.ctl, "--bpffs-root", self.bpffs,
                   "-j", "stats"])
        rows = json.loads(out)["verdicts"]
        return next(r["packets"] for r in rows if r["reason"] == "sock_translated")

    def measure(self, where, mode, via_vip, count):
        if via_vip:
            self.expected += count
        ns = self.pod_c if where == "pod" else self.node
        addr, port = (VIP, VPORT) if via_vip else (POD_S, SPORT)
        cmd = ["ip", "netns", "exec", ns, self.args.client, mode, addr, str(port), str(count)]
        if via_vip:
            cmd += ["--cgroup", self.cg]
        out = run(cmd, timeout=300)
        return json.loads(out.strip().splitlines()[-1])

    def bench(self):
        a = self.args
        cases = [(w, m) for w in ("pod", "host") for m in ("connect", "request", "uconnect")]
        for w, m in cases:  # warm-up: caches, the neighbour entries, the first map nodes
            self.measure(w, m, True, min(500, a.count))
            self.measure(w, m, False, min(500, a.count))
        rounds = {c: {"A": [], "B": []} for c in cases}
        for r in range(a.rounds):
            for w, m in cases:
                for variant, via_vip in (("A", True), ("B", False)):
                    res = self.measure(w, m, via_vip, a.count)
                    rounds[(w, m)][variant].append(res)
            log("round %d/%d done" % (r + 1, a.rounds))
        # A must really have gone through socket-LB (B never does: outside the cgroup).
        got = self.translated()
        if got < self.expected:
            raise RuntimeError("socket-LB translated %d connect() calls, the A measures made %d"
                               % (got, self.expected))
        log("socket-LB translated %d connect() calls (A made %d)" % (got, self.expected))
        summary = {}
        for (w, m), rr in rounds.items():
            med = {v: {k: statistics.median(x[k] for x in rr[v])
                       for k in ("p50_ns", "p90_ns", "p99_ns", "per_s", "per_s_wall")}
                   for v in ("A", "B")}
            p50_ratios = [x["p50_ns"] / y["p50_ns"] for x, y in zip(rr["A"], rr["B"])]
            rate_ratios = [y["per_s"] / x["per_s"] for x, y in zip(rr["A"], rr["B"])]
            diffs = [x["p50_ns"] - y["p50_ns"] for x, y in zip(rr["A"], rr["B"])]
            summary["%s %s" % (w, m)] = {
                "cost_ns": statistics.median(diffs),
                "A_socket_lb": med["A"], "B_direct": med["B"],
                "ratio_p50": statistics.median(p50_ratios),
                "ratio_rate": statistics.median(rate_ratios),
                "per_round_p50_ratio": [round(x, 4) for x in p50_ratios],
                "per_round_rate_ratio": [round(x, 4) for x in rate_ratios],
            }
        return summary

    # ---------------------------------------------------------------- cleanup
    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        if self.bpffs_mounted and self.node in self.netns:
            run(["ip", "netns", "exec", self.node, self.args.agent, "--cleanup", "--bpffs-root",
                 self.bpffs], check=False)
        for name in reversed(self.netns):
            run(["ip", "netns", "del", name], check=False)
        if self.bpffs_mounted:
            run(["umount", self.bpffs], check=False)
        if self.cg:
            try:
                os.rmdir(self.cg)  # never a recursive delete inside a cgroup2 mount
            except OSError as e:
                log("could not remove cgroup %s: %s" % (self.cg, e))
        if self.cg_mount:
            run(["umount", self.cg_mount], check=False)
            try:
                os.rmdir(self.cg_mount)
            except OSError as e:
                log("could not remove %s: %s" % (self.cg_mount, e))
        if not self.args.keep_tmp and not os.path.ismount(self.bpffs):
            shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--count", type=int, default=500, help="connections per measure")
    ap.add_argument("--agent", default=os.path.join(REPO, "build/bin/sluice-agent"))
    ap.add_argument("--client", default=os.path.join(REPO, "build/bin/socklb_bench"))
    ap.add_argument("--ctl", default=os.path.join(REPO, "build/bin/sluicectl"))
    ap.add_argument("--json-out")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("socklb_bench.py: needs root (BPF, network namespaces, mounts); skipping",
              file=sys.stderr)
        return 77
    b = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        b.setup()
        t0 = time.monotonic()
        summary = b.bench()
        took = time.monotonic() - t0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        b.cleanup()
    print("%-14s %12s %12s %8s   %12s %12s %8s" % ("", "p50 A (ns)", "p50 B (ns)", "ratio",
                                                  "rate A (/s)", "rate B (/s)", "ratio"))
    for name, s in summary.items():
        print("%-14s %12.0f %12.0f %8.3f   %12.0f %12.0f %8.3f"
              % (name, s["A_socket_lb"]["p50_ns"], s["B_direct"]["p50_ns"], s["ratio_p50"],
                 s["A_socket_lb"]["per_s"], s["B_direct"]["per_s"], s["ratio_rate"]))
    worst = max(max(s["ratio_p50"], s["ratio_rate"]) for n, s in summary.items()
                if not n.endswith("uconnect"))
    for n, s in summary.items():
        if n.endswith("uconnect"):
            print("%s: the socket program costs %.0f ns per connect() (median of the per-round "
                  "p50 differences; p50 %.0f vs %.0f ns)"
                  % (n.split()[0], s["cost_ns"], s["A_socket_lb"]["p50_ns"],
                     s["B_direct"]["p50_ns"]))
    print("worst ratio %.3f (target <= 1.05): %s; %d rounds x %d per measure, %.0f s; load %s"
          % (worst, "met" if worst <= 1.05 else "MISSED", args.rounds, args.count, took,
             " ".join("%.2f" % x for x in os.getloadavg())))
    result = {"rounds": args.rounds, "count": args.count, "seconds": round(took, 1),
              "loadavg": os.getloadavg(), "summary": summary, "worst_ratio": worst}
    print("BENCH_JSON " + json.dumps(result, sort_keys=True))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
