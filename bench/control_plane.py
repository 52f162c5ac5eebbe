#!/usr/bin/env python3
"""sluice control-plane benchmark: list-to-programmed, event-to-map latency, RSS, restart;
side by side with kube-proxy's iptables programming of the same cluster (iptables-restore).

Run as root (BPF, network namespaces, bpffs mount); exits 77 otherwise.  Python 3 stdlib only.

  sudo /usr/bin/python3 bench/control_plane.py            # 10k Services / 100k endpoints
  sudo /usr/bin/python3 bench/control_plane.py --quick    # 1k / 10k smoke run
  sudo /usr/bin/python3 bench/control_plane.py --help

Rounds are interleaved A B A B (sluice, iptables, sluice, iptables, ...).  Everything lives in a
temp dir, a bpffs mounted there, and network namespaces created here; all of it is removed on
exit, also on failure or Ctrl-C.  See bench/README.md for the method and the latest figures.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import kube_proxy_rules as kpr  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
DEADLINE_TOTAL_S = 600

SYNC_RE = re.compile(r"synced generation=(\d+) frontends=(\d+) backends=(\d+) ops=(\d+) "
                     r"touched=(\d+) full=(\d) conflicts=(\d+)(.*?) took_us=(\d+)")
LOG_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)")


class BenchError(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def summary(values):
    if not values:
        return None
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90),
            "p99": pct(values, 99), "max": max(values), "mean": round(statistics.fmean(values), 1)}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run(cmd, timeout=60, check=True, **kw):
    r = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise BenchError("%s -> %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()[-500:]))
    return r


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return out


def cpu_ms(pid):
    """CPU time (user+sys, ms) of a process: total, its main thread, and the other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"total": 0, "main": 0, "threads": []}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            ms = round((int(f[11]) + int(f[12])) * 1000 / tick)
            out["total"] += ms
            if int(tid) == pid:
                out["main"] = ms
            elif ms:
                out["threads"].append(ms)
    except OSError:
        pass
    out["threads"].sort(reverse=True)
    try:  # the process total also counts threads that already exited
        with open("/proc/%d/stat" % pid) as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        out["total"] = round((int(f[11]) + int(f[12])) * 1000 / tick)
    except OSError:
        pass
    return out


def log_epoch(line):
    """Agent log timestamp (local time, ms) -> epoch seconds, or None."""
    m = LOG_TS_RE.match(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()


# ------------------------------------------------------------------------------------------------
# Unix-socket HTTP helpers (control socket of the stand-in, and a raw watch probe)

def unix_http(path, method, url, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        req = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (method, url, len(data))).encode()
        s.sendall(req + data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload else None


class WatchProbe(threading.Thread):
    """A second watcher of EndpointSlices on the stand-in: records when each RV arrives, which is
    the stand-in's own share of the event-to-map latency (POST -> event on a watch socket)."""

    def __init__(self, sock_path, rv):
        super().__init__(daemon=True)
        self.sock_path, self.rv = sock_path, rv
        self.arrivals = {}
        self.cond = threading.Condition()
        self.sock = None
        self.error = None

    def run(self):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock_path)
            self.sock = s
            s.sendall(("GET /apis/discovery.k8s.io/v1/endpointslices?watch=1&resourceVersion=%s "
                       "HTTP/1.1\r\nHost: x\r\n\r\n" % self.rv).encode())
            f = s.makefile("rb")
            while True:  # headers
                line = f.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
            buf = b""
            while True:
                size_line = f.readline()
                if not size_line:
                    return
                size = int(size_line.strip().split(b";")[0], 16)
                if size == 0:
                    return
                buf += f.read(size)
                f.readline()
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    t = time.monotonic()
                    m = re.search(rb'"resourceVersion":"(\d+)"', line)
                    if m:
                        with self.cond:
                            self.arrivals[m.group(1).decode()] = t
                            self.cond.notify_all()
        except Exception as e:  # noqa: BLE001 - reported, the probe is optional
            self.error = e

    def wait_rv(self, rv, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while rv not in self.arrivals:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.arrivals[rv]

    def close(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------------
# Agent process wrapper: reads its log, timestamps every line on arrival

class Agent:
    def __init__(self, bench, tag):
        self.bench, self.tag = bench, tag
        self.lines = queue.Queue()
        self.all_lines = []
        self.proc = None
        self.t_spawn = None
        self.t_spawn_epoch = None
        self.logfile = open(os.path.join(bench.tmp, "agent-%s.log" % tag), "w")

    def start(self):
        b = self.bench
        cmd = ["nsenter", "--net=/run/netns/" + b.netns, b.agent_bin,
               "--k8s-api-server", "unix://" + b.api_sock, "--node-name", "node-0",
               "--bpffs-root", b.bpffs, "--log-level", b.args.log_level]
        self.t_spawn_epoch = time.time()
        self.t_spawn = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        b.procs.append(self.proc)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for raw in self.proc.stdout:
            t = time.monotonic()
            line = raw.decode(errors="replace").rstrip("\n")
            self.logfile.write(line + "\n")
            self.all_lines.append((t, line))
            self.lines.put((t, line))
        self.lines.put((time.monotonic(), None))

    def wait_line(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise BenchError("agent %s: timed out after %.0f s waiting for %s (log: %s)" %
                                 (self.tag, timeout, what, self.logfile.name))
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError("agent %s exited (rc=%s) while waiting for %s (log: %s)" %
                                 (self.tag, self.proc.wait(), what, self.logfile.name))
            r = pred(line)
            if r:
                return t, line, r

    def wait_sync(self, timeout, min_gen=1):
        def pred(line):
            m = SYNC_RE.search(line)
            if m and int(m.group(1)) >= min_gen:
                lat = re.search(r"latency_us=(\d+)", m.group(8))
                return {"generation": int(m.group(1)), "frontends": int(m.group(2)),
                        "backends": int(m.group(3)), "ops": int(m.group(4)),
                        "touched": int(m.group(5)), "full": int(m.group(6)),
                        "conflicts": int(m.group(7)), "took_us": int(m.group(9)),
                        "latency_us": int(lat.group(1)) if lat else None}
            return None
        return self.wait_line(pred, timeout, "synced generation>=%d" % min_gen)

    def find(self, needle):
        for t, line in self.all_lines:
            if needle in line:
                return t, line
        return None, None

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logfile.flush()


# ------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.t_begin = time.monotonic()
        self.tmp = tempfile.mkdtemp(prefix="sluice-bench-")
        self.netns = "sluice-bench-%d" % os.getpid()
        self.netns_list = []
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.bpffs_mounted = False
        self.api_sock = os.path.join(self.tmp, "api.sock")
        self.ctl_sock = os.path.join(self.tmp, "ctl.sock")
        self.procs = []
        self.fake = None
        self.agent_bin = None
        self.cluster = None
        self.slices = {}
        self.change_seq = 0
        self.rng = random.Random(args.seed)

    # -------------------------------------------------------------------------------- helpers
    def left(self):
        return DEADLINE_TOTAL_S * self.args.time_scale - (time.monotonic() - self.t_begin)

    def check_budget(self, what):
        if self.left() <= 0:
            raise BenchError("total time budget exhausted before %s (use --time-scale)" % what)

    def netns_add(self, name):
        run(["ip", "netns", "add", name])
        self.netns_list.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def netns_del(self, name):
        if name in self.netns_list:
            run(["ip", "netns", "del", name], check=False)
            self.netns_list.remove(name)

    # -------------------------------------------------------------------------------- setup
    def setup(self):
        a = self.args
        log("temp dir %s" % self.tmp)
        src = a.agent
        if not os.access(src, os.X_OK):
            raise BenchError("agent binary %s not found or not executable" % src)
        # A private copy: a concurrent rebuild of build/ must not swap the binary mid-run.
        self.agent_bin = os.path.join(self.tmp, "sluice-agent")
        shutil.copy2(src, self.agent_bin)
        import hashlib
        with open(self.agent_bin, "rb") as fh:
            self.agent_sha = hashlib.sha256(fh.read()).hexdigest()[:12]
        self.agent_mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.stat(src).st_mtime))
        log("agent %s (sha256 %s, built %s)" % (src, self.agent_sha, self.agent_mtime))
        self.cluster_file = os.path.join(self.tmp, "cluster.json")
        t = time.monotonic()
        run([PY, os.path.join(REPO, "tests/kube/gen_cluster.py"), "--services", str(a.services),
             "--endpoints", str(a.endpoints), "--per-slice", str(a.per_slice), "--nodes",
             str(a.nodes), "--distribution", a.distribution, "--seed", str(a.seed), "-o",
             self.cluster_file], timeout=300)
        with open(self.cluster_file) as fh:
            self.cluster = json.load(fh)
        log("cluster generated in %.1f s: %d services, %d endpointslices" %
            (time.monotonic() - t, len(self.cluster["services"]), len(self.cluster["endpointslices"])))
        # Slices eligible for single-endpoint changes: served ones with at least one endpoint.
        for sl in self.cluster["endpointslices"]:
            labels = sl["metadata"].get("labels") or {}
            if kpr.HEADLESS_LABEL in labels or kpr.SKIP_LABEL in labels or not sl.get("endpoints"):
                continue
            self.slices[(sl["metadata"]["namespace"], sl["metadata"]["name"])] = sl
        self.change_keys = sorted(self.slices)
        self.rng.shuffle(self.change_keys)

        os.makedirs(self.bpffs)
        run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self.bpffs_mounted = True
        self.netns_add(self.netns)

        t = time.monotonic()
        self.fake = subprocess.Popen(
            [PY, os.path.join(REPO, "tests/kube/fake_apiserver.py"), "--unix", self.api_sock,
             "--control", self.ctl_sock, "--preload", self.cluster_file],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.tmp, "fake_apiserver.log"), "w"),
            stdin=subprocess.DEVNULL, text=True)
        self.procs.append(self.fake)
        ready = queue.Queue()
        threading.Thread(target=lambda: ready.put(self.fake.stdout.readline()), daemon=True).start()
        try:
            line = ready.get(timeout=180)
        except queue.Empty:
            raise BenchError("fake_apiserver not ready after 180 s")
        if line.strip() != "ready":
            raise BenchError("fake_apiserver failed (see %s/fake_apiserver.log)" % self.tmp)
        log("stand-in API server ready in %.1f s (preload)" % (time.monotonic() - t))

        # kube-proxy equivalent
        self.ipt = None
        if not a.no_iptables:
            self.ipt = self.setup_iptables()

    def setup_iptables(self):
        a = self.args
        backends = []
        for b in a.iptables_backend.split(","):
            b = b.strip()
            tool = "iptables-%s-restore" % b
            if shutil.which(tool) is None and a.install_iptables:
                log("installing the iptables package (apt-get install iptables)")
                run(["apt-get", "install", "-y", "-q", "iptables"], timeout=300, check=False)
            if shutil.which(tool) is None:
                log("SKIP iptables comparison for %s: %s not found (apt-get install iptables)" % (b, tool))
                continue
            backends.append(b)
        if not backends:
            return None
        t = time.monotonic()
        self.kp_model = kpr.load_model(self.cluster, "node-0", "10.244.0.0/14")
        text = kpr.full_restore(self.kp_model)
        self.kp_full = os.path.join(self.tmp, "kube-proxy-full.rules")
        with open(self.kp_full, "w") as fh:
            fh.write(text)
        self.kp_base = os.path.join(self.tmp, "kube-proxy-base.rules")
        with open(self.kp_base, "w") as fh:
            fh.write(kpr.base_rules())
        self.kp_lines = text.count("\n")
        self.kp_rules = text.count("\n-A ")
        log("kube-proxy rules: %d service ports, %d endpoints, %d lines (%d rules), generated in %.1f s"
            % (len(self.kp_model.ports), self.kp_model.endpoint_count(), self.kp_lines,
               self.kp_rules, time.monotonic() - t))
        self.kp_ports_by_key = {}
        for p in self.kp_model.ports:
            self.kp_ports_by_key.setdefault(p.key, []).append(p)
        return backends

    # -------------------------------------------------------------------------------- changes
    def next_change(self):
        """Replace one endpoint of one slice by a new address (a pod replaced): returns
        (slice object to POST, service key, old ip, new ip)."""
        key = self.change_keys[self.change_seq % len(self.change_keys)]
        self.change_seq += 1
        sl = json.loads(json.dumps(self.slices[key]))
        ep = sl["endpoints"][self.rng.randrange(len(sl["endpoints"]))]
        old = ep["addresses"][0]
        n = self.change_seq
        new = "10.250.%d.%d" % ((n // 250) % 250, n % 250 + 1)
        ep["addresses"] = [new]
        ep.get("targetRef", {})["name"] = "bench-pod-%d" % n
        self.slices[key] = sl
        svc_key = (sl["metadata"]["namespace"], sl["metadata"]["labels"]["kubernetes.io/service-name"])
        return sl, svc_key, old, new

    # -------------------------------------------------------------------------------- sluice
    def sluice_round(self, idx):
        a = self.args
        r = {"round": idx}
        self.check_budget("sluice round %d" % idx)
        state = unix_http(self.ctl_sock, "GET", "/state")[1]
        # cold start: nothing pinned
        run(["nsenter", "--net=/run/netns/" + self.netns, self.agent_bin, "--cleanup",
             "--bpffs-root", self.bpffs], timeout=60)
        fake_cpu0 = cpu_ms(self.fake.pid)["total"]
        ag = Agent(self, "r%d-cold" % idx)
        ag.start()
        t_sync, _, s = ag.wait_sync(a.sync_timeout)
        agent_cpu = cpu_ms(ag.proc.pid)
        fake_cpu = cpu_ms(self.fake.pid)["total"] - fake_cpu0
        t_api, _ = ag.find("Kubernetes API at")
        r["cold"] = {
            "start_to_programmed_ms": round((t_sync - ag.t_spawn) * 1e3, 1),
            "api_to_programmed_ms": round((t_sync - t_api) * 1e3, 1) if t_api else None,
            "sync": s, "agent_cpu_ms": agent_cpu, "standin_cpu_ms": fake_cpu}
        r["cold"].update(self.phases(ag, t_sync))
        if self.expected_frontends is None:
            self.expected_frontends = s["frontends"]
        elif s["frontends"] != self.expected_frontends:
            raise BenchError("round %d programmed %d frontends, expected %d" %
                             (idx, s["frontends"], self.expected_frontends))
        time.sleep(0.2)
        r["rss_after_sync_kb"] = proc_status(ag.proc.pid)
        log("sluice r%d cold: %.0f ms from start, %.0f ms from API line; %s; took_us=%d; RSS %s kB" %
            (idx, r["cold"]["start_to_programmed_ms"], r["cold"]["api_to_programmed_ms"] or -1,
             "frontends=%d backends=%d ops=%d" % (s["frontends"], s["backends"], s["ops"]),
             s["took_us"], r["rss_after_sync_kb"].get("VmRSS")))

        # event-to-map
        probe = WatchProbe(self.api_sock, state["resourceVersion"])
        probe.start()
        gen = s["generation"]
        ev = {"latency_us": [], "took_us": [], "bench_post_to_line_us": [], "post_us": [],
              "standin_us": [], "agent_share_us": [], "ops": []}
        missing_latency = 0
        for i in range(a.changes):
            self.check_budget("change %d of round %d" % (i, idx))
            sl, _, _, _ = self.next_change()
            stamp = datetime.datetime.now(datetime.timezone.utc)
            sl["metadata"].setdefault("annotations", {})[
                "endpoints.kubernetes.io/last-change-trigger-time"] = \
                stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            t0 = time.monotonic()
            code, reply = unix_http(self.ctl_sock, "POST", "/objects",
                                    {"resource": "endpointslices", "object": sl})
            t1 = time.monotonic()
            if code != 200:
                raise BenchError("POST /objects -> %d %s" % (code, reply))
            t_line, _, s2 = ag.wait_sync(a.event_timeout, gen + 1)
            gen = s2["generation"]
            t_probe = probe.wait_rv(reply["resourceVersion"], 2.0)
            ev["took_us"].append(s2["took_us"])
            ev["ops"].append(s2["ops"])
            ev["bench_post_to_line_us"].append(round((t_line - t0) * 1e6))
            ev["post_us"].append(round((t1 - t0) * 1e6))
            if s2["latency_us"] is None:
                missing_latency += 1
            else:
                ev["latency_us"].append(s2["latency_us"])
            if t_probe is not None:
                ev["standin_us"].append(round((t_probe - t0) * 1e6))
                # the agent's own part: from the event being on the wire to the sync log line
                ev["agent_share_us"].append(round((t_line - t_probe) * 1e6))
        probe.close()
        r["event"] = {k: summary(v) for k, v in ev.items()}
        self.pooled.setdefault("latency_us", []).extend(ev["latency_us"])
        self.pooled.setdefault("took_us", []).extend(ev["took_us"])
        self.pooled.setdefault("standin_us", []).extend(ev["standin_us"])
        self.pooled.setdefault("agent_share_us", []).extend(ev["agent_share_us"])
        r["event"]["missing_latency"] = missing_latency
        r["event"]["probe_error"] = repr(probe.error) if probe.error else None
        r["rss_end_kb"] = proc_status(ag.proc.pid)
        e = r["event"]
        log("sluice r%d events: n=%d latency_us p50=%s p99=%s max=%s; took_us p50=%s p99=%s; "
            "stand-in p50=%s; RSS %s kB HWM %s kB" %
            (idx, a.changes, e["latency_us"] and e["latency_us"]["p50"],
             e["latency_us"] and e["latency_us"]["p99"], e["latency_us"] and e["latency_us"]["max"],
             e["took_us"] and e["took_us"]["p50"], e["took_us"] and e["took_us"]["p99"],
             e["standin_us"] and e["standin_us"]["p50"], r["rss_end_kb"].get("VmRSS"),
             r["rss_end_kb"].get("VmHWM")))
        ag.stop()

        # restart against the same pinned maps
        ag2 = Agent(self, "r%d-restart" % idx)
        ag2.start()
        t_sync2, _, s3 = ag2.wait_sync(a.sync_timeout)
        agent_cpu2 = cpu_ms(ag2.proc.pid)
        t_api2, _ = ag2.find("Kubernetes API at")
        r["restart"] = {
            "start_to_programmed_ms": round((t_sync2 - ag2.t_spawn) * 1e3, 1),
            "api_to_programmed_ms": round((t_sync2 - t_api2) * 1e3, 1) if t_api2 else None,
            "sync": s3, "agent_cpu_ms": agent_cpu2}
        r["restart"].update(self.phases(ag2, t_sync2))
        time.sleep(0.2)
        r["restart"]["rss_kb"] = proc_status(ag2.proc.pid)
        log("sluice r%d restart: %.0f ms from start; ops=%d took_us=%d" %
            (idx, r["restart"]["start_to_programmed_ms"], s3["ops"], s3["took_us"]))
        ag2.stop()
        run(["nsenter", "--net=/run/netns/" + self.netns, self.agent_bin, "--cleanup",
             "--bpffs-root", self.bpffs], timeout=60)
        return r

    def phases(self, ag, t_sync):
        """Where the cold/restart time goes, from the agent's own log timestamps (ms)."""
        out = {}
        ts = {}
        for needle, key in (("datapath loaded", "loaded"), ("Kubernetes API at", "api"),
                            ("kube services: listed", "services_listed"),
                            ("kube endpointslices: listed", "slices_listed"),
                            ("kube nodes: listed", "nodes_listed"),
                            ("kube pods: listed", "pods_listed")):
            _, line = ag.find(needle)
            if line:
                ts[key] = log_epoch(line)
        for t, line in ag.all_lines:
            if SYNC_RE.search(line):
                ts["synced"] = log_epoch(line)
                break
        base = ag.t_spawn_epoch
        out["phases_ms"] = {k: round((v - base) * 1e3) for k, v in ts.items() if v}
        return out

    # -------------------------------------------------------------------------------- iptables
    def ipt_restore(self, tool, ns, path, noflush=True):
        cmd = ["nsenter", "--net=/run/netns/" + ns, tool, "-w"]
        if noflush:
            cmd.append("--noflush")
        with open(path) as fh:
            t = time.monotonic()
            p = subprocess.Popen(cmd, stdin=fh, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.procs.append(p)
            deadline = max(30.0, self.left())
            try:
                _, err = p.communicate(timeout=deadline)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise BenchError("%s timed out after %.0f s" % (tool, deadline))
            dt = time.monotonic() - t
        if p.returncode != 0:
            raise BenchError("%s %s failed: %s" % (tool, path, err.decode()[-800:]))
        return dt

    def iptables_round(self, idx, backend):
        a = self.args
        self.check_budget("iptables round %d" % idx)
        tool = "iptables-%s-restore" % backend
        ns = "%s-ipt%d" % (self.netns, idx)
        self.netns_add(ns)
        r = {"round": idx, "backend": backend}
        try:
            self.ipt_restore(tool, ns, self.kp_base, noflush=False)
            dt = self.ipt_restore(tool, ns, self.kp_full)
            r["full_restore_ms"] = round(dt * 1e3, 1)
            save = run(["nsenter", "--net=/run/netns/" + ns, "iptables-%s-save" % backend, "-t", "nat"],
                       timeout=300)
            r["nat_rules_loaded"] = sum(1 for l in save.stdout.splitlines() if l.startswith("-A "))
            log("iptables(%s) r%d: full restore %d lines: %.0f ms (%d nat rules in the kernel)" %
                (backend, idx, self.kp_lines, dt * 1e3, r["nat_rules_loaded"]))
            # single-endpoint changes as KEP-3453 partial syncs
            times = []
            for i in range(a.iptables_changes):
                if times and self.left() < 3 * max(times) / 1e6 + r["full_restore_ms"] / 1e3 + 60:
                    log("iptables(%s) r%d: stopping partial restores after %d (time budget)" %
                        (backend, idx, len(times)))
                    break
                _, svc_key, old, new = self.next_change()
                stale = []
                for p in self.kp_ports_by_key.get(svc_key, []):
                    for lst in (p.endpoints, p.local_endpoints):
                        for j, ep in enumerate(lst):
                            if ep.rsplit(":", 1)[0] == old:
                                if lst is p.endpoints:
                                    stale.append(kpr.sep_chain(p.spn, p.proto, ep))
                                lst[j] = new + ":" + ep.rsplit(":", 1)[1]
                        lst.sort()
                text = kpr.partial_restore(self.kp_model, [svc_key], stale)
                path = os.path.join(self.tmp, "kube-proxy-partial.rules")
                with open(path, "w") as fh:
                    fh.write(text)
                dt = self.ipt_restore(tool, ns, path)
                times.append(round(dt * 1e6))
            r["partial_us"] = summary(times)
            r["partial_lines"] = text.count("\n") if a.iptables_changes else None
            if times:
                log("iptables(%s) r%d: %d partial restores (%d lines each): p50 %.0f ms, max %.0f ms"
                    % (backend, idx, len(times), r["partial_lines"], pct(times, 50) / 1e3,
                       max(times) / 1e3))
            # restart of kube-proxy = a full sync over the existing rules
            if not a.no_iptables_resync:
                text = kpr.full_restore(self.kp_model)
                with open(self.kp_full, "w") as fh:
                    fh.write(text)
                dt = self.ipt_restore(tool, ns, self.kp_full)
                r["resync_ms"] = round(dt * 1e3, 1)
                log("iptables(%s) r%d: full resync over existing rules: %.0f ms" %
                    (backend, idx, dt * 1e3))
        finally:
            t = time.monotonic()
            self.netns_del(ns)
            r["netns_del_ms"] = round((time.monotonic() - t) * 1e3)
        return r

    # -------------------------------------------------------------------------------- main
    def standin_list_baseline(self):
        """How long the stand-in alone needs to serve the lists the agent makes (same paths,
        selectors and page size, two resources in parallel as the agent does), read by a
        client that only discards bytes."""
        sel = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
        res = {}

        def lister(name, path):
            t = time.monotonic()
            cont = None
            pages = 0
            nbytes = 0
            while True:
                q = "limit=500&labelSelector=" + sel.replace(",", "%2C").replace("!", "%21")
                if cont:
                    q += "&continue=" + cont
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(60)
                s.connect(self.api_sock)
                s.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (path, q)).encode())
                chunks = []
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    chunks.append(b)
                s.close()
                raw = b"".join(chunks)
                nbytes += len(raw)
                pages += 1
                m = re.search(rb'"continue":"([^"]+)"', raw[:4096])
                cont = m.group(1).decode() if m else None
                if not cont:
                    break
            res[name] = {"ms": round((time.monotonic() - t) * 1e3), "pages": pages, "bytes": nbytes}

        th = [threading.Thread(target=lister, args=("services", "/api/v1/services")),
              threading.Thread(target=lister, args=("endpointslices",
                                                    "/apis/discovery.k8s.io/v1/endpointslices"))]
        t = time.monotonic()
        for x in th:
            x.start()
        for x in th:
            x.join(120)
        res["both_ms"] = round((time.monotonic() - t) * 1e3)
        return res

    def main(self):
        a = self.args
        self.expected_frontends = None
        self.pooled = {}
        self.setup()
        results = {"sluice": [], "iptables": []}
        results["standin_list_baseline"] = []
        ipt_backends = self.ipt or []
        for i in range(a.rounds):
            results["standin_list_baseline"].append(self.standin_list_baseline())
            log("stand-in alone serves the lists in %s" % results["standin_list_baseline"][-1])
            results["sluice"].append(self.sluice_round(i))
            for b in ipt_backends:
                results["iptables"].append(self.iptables_round(i, b))
        return self.report(results)

    def report(self, results):
        a = self.args
        sl = results["sluice"]
        out = {
            "bench": "sluice-control-plane", "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%SZ"), "kernel": platform.release(), "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(), "cmd": " ".join(sys.argv),
            "cluster": {"services": a.services, "endpoints": a.endpoints, "per_slice": a.per_slice,
                        "distribution": a.distribution,
                        "endpointslices": len(self.cluster["endpointslices"]),
                        "frontends": self.expected_frontends,
                        "backends": sl[0]["cold"]["sync"]["backends"] if sl else None},
            "rounds": a.rounds, "changes_per_round": a.changes,
            "agent": {"path": a.agent, "sha256_12": self.agent_sha, "mtime": self.agent_mtime},
        }

        s = {
            "cold_start_to_programmed_ms": med([r["cold"]["start_to_programmed_ms"] for r in sl]),
            "cold_api_to_programmed_ms": med([r["cold"]["api_to_programmed_ms"] for r in sl]),
            "cold_programming_took_ms": med([r["cold"]["sync"]["took_us"] / 1e3 for r in sl]),
            "restart_start_to_programmed_ms": med([r["restart"]["start_to_programmed_ms"] for r in sl]),
            "restart_ops": [r["restart"]["sync"]["ops"] for r in sl],
            "restart_took_ms": med([r["restart"]["sync"]["took_us"] / 1e3 for r in sl]),
            "event_latency_p50_us": med([r["event"]["latency_us"]["p50"] for r in sl if r["event"]["latency_us"]]),
            "event_latency_p99_us": med([r["event"]["latency_us"]["p99"] for r in sl if r["event"]["latency_us"]]),
            "event_latency_max_us": max([r["event"]["latency_us"]["max"] for r in sl if r["event"]["latency_us"]] or [0]),
            "event_took_p50_us": med([r["event"]["took_us"]["p50"] for r in sl]),
            "event_took_p99_us": med([r["event"]["took_us"]["p99"] for r in sl]),
            "event_standin_p50_us": med([r["event"]["standin_us"]["p50"] for r in sl if r["event"]["standin_us"]]),
            "event_standin_p99_us": med([r["event"]["standin_us"]["p99"] for r in sl if r["event"]["standin_us"]]),
            "event_agent_share_p50_us": med([r["event"]["agent_share_us"]["p50"] for r in sl if r["event"]["agent_share_us"]]),
            "event_agent_share_p99_us": med([r["event"]["agent_share_us"]["p99"] for r in sl if r["event"]["agent_share_us"]]),
            "rss_after_sync_kb": med([r["rss_after_sync_kb"].get("VmRSS") for r in sl]),
            "rss_end_kb": med([r["rss_end_kb"].get("VmRSS") for r in sl]),
            "hwm_end_kb": max([r["rss_end_kb"].get("VmHWM", 0) for r in sl] or [0]),
            "standin_list_both_ms": med([b["both_ms"] for b in results["standin_list_baseline"]]),
            "cold_agent_cpu_ms": med([r["cold"]["agent_cpu_ms"]["total"] for r in sl]),
            "cold_agent_cpu_main_ms": med([r["cold"]["agent_cpu_ms"]["main"] for r in sl]),
            "cold_standin_cpu_ms": med([r["cold"]["standin_cpu_ms"] for r in sl]),
            "restart_agent_cpu_ms": med([r["restart"]["agent_cpu_ms"]["total"] for r in sl]),
            "pooled_event": {k: summary(v) for k, v in self.pooled.items()},
        }
        out["sluice"] = s
        out["targets"] = {
            "list_to_programmed_le_2s": s["cold_start_to_programmed_ms"] is not None and s["cold_start_to_programmed_ms"] <= 2000,
            "event_p99_le_10ms": bool(self.pooled.get("latency_us")) and pct(self.pooled["latency_us"], 99) <= 10000,
            "rss_le_150MiB": s["hwm_end_kb"] <= 150 * 1024,
            "rss_le_150MB": s["hwm_end_kb"] * 1024 <= 150e6,
        }
        ipt = {}
        for b in sorted({r["backend"] for r in results["iptables"]}):
            rs = [r for r in results["iptables"] if r["backend"] == b]
            d = {"rules_lines": self.kp_lines, "rules": self.kp_rules,
                 "full_restore_ms": med([r["full_restore_ms"] for r in rs]),
                 "partial_p50_us": med([r["partial_us"]["p50"] for r in rs if r["partial_us"]]),
                 "partial_max_us": max([r["partial_us"]["max"] for r in rs if r["partial_us"]] or [0]),
                 "resync_ms": med([r.get("resync_ms") for r in rs])}

            def ratio(x, y):
                return round(x / y, 2) if x and y else None
            d["ratio_full_restore_over_sluice_cold"] = ratio(d["full_restore_ms"], s["cold_start_to_programmed_ms"])
            d["ratio_full_restore_over_sluice_cold_from_api"] = ratio(d["full_restore_ms"], s["cold_api_to_programmed_ms"])
            d["ratio_full_restore_over_sluice_programming"] = ratio(d["full_restore_ms"], s["cold_programming_took_ms"])
            d["ratio_partial_p50_over_sluice_event_p50"] = ratio(d["partial_p50_us"], s["event_latency_p50_us"])
            d["ratio_partial_p50_over_sluice_took_p50"] = ratio(d["partial_p50_us"], s["event_took_p50_us"])
            d["ratio_resync_over_sluice_restart"] = ratio(d["resync_ms"], s["restart_start_to_programmed_ms"])
            ipt[b] = d
        out["iptables"] = ipt
        out["per_round"] = results
        self.print_summary(out)
        with open(os.path.join(self.tmp, "result.json"), "w") as fh:
            json.dump(out, fh, indent=1)
        if a.json_out:
            with open(a.json_out, "w") as fh:
                json.dump(out, fh, indent=1)
        compact = {k: v for k, v in out.items() if k != "per_round"}
        print("BENCH_JSON " + json.dumps(compact, separators=(",", ":")))
        return out

    def print_summary(self, o):
        s = o["sluice"]
        c = o["cluster"]
        p = print
        p("")
        p("sluice control-plane benchmark  %s  kernel %s  %d CPUs  load %.2f %.2f %.2f" %
          ((o["date"], o["kernel"], o["cpus"]) + tuple(o["loadavg_end"])))
        p("cluster: %d services, %d endpoints (%s, %d per slice max) -> %d EndpointSlices, "
          "%s frontends, %s backends programmed" % (c["services"], c["endpoints"], c["distribution"],
                                                    c["per_slice"], c["endpointslices"],
                                                    c["frontends"], c["backends"]))
        p("rounds: %d, interleaved sluice / iptables; medians over rounds" % o["rounds"])
        p("")
        p("sluice (stand-in Python API server on a Unix socket)")
        p("  list -> programmed, cold, from process start : %8.0f ms   (target <= 2000)  %s" %
          (s["cold_start_to_programmed_ms"], "OK" if o["targets"]["list_to_programmed_le_2s"] else "MISSED"))
        p("  list -> programmed, from 'Kubernetes API at' : %8.0f ms" % s["cold_api_to_programmed_ms"])
        p("    of which map programming (took_us)         : %8.0f ms" % s["cold_programming_took_ms"])
        p("    stand-in alone serving the same lists      : %8.0f ms" % s["standin_list_both_ms"])
        p("  CPU used until programmed: agent %.0f ms (main thread %.0f ms), stand-in %.0f ms" %
          (s["cold_agent_cpu_ms"], s["cold_agent_cpu_main_ms"], s["cold_standin_cpu_ms"]))
        for r in o["per_round"]["sluice"]:
            p("    round %d phases, ms after process start: %s" % (r["round"], " ".join(
                "%s=%s" % kv for kv in sorted(r["cold"]["phases_ms"].items(), key=lambda kv: kv[1]))))
        p("  restart on pinned maps, start -> programmed  : %8.0f ms   ops=%s took %.0f ms" %
          (s["restart_start_to_programmed_ms"], s["restart_ops"], s["restart_took_ms"]))
        pe = s["pooled_event"]
        p("  one endpoint change, trigger -> map (latency_us), %d per round, all rounds pooled:" % o["changes_per_round"])
        p("    p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us   (target p99 <= 10000)  %s" %
          (pe["latency_us"]["p50"], pe["latency_us"]["p90"], pe["latency_us"]["p99"], pe["latency_us"]["max"],
           "OK" if o["targets"]["event_p99_le_10ms"] else "MISSED"))
        p("    (median of per-round p50 %.0f us, p99 %.0f us)" % (s["event_latency_p50_us"], s["event_latency_p99_us"]))
        p("    agent sync only (took_us)              p50 %.0f us, p99 %.0f us" % (pe["took_us"]["p50"], pe["took_us"]["p99"]))
        p("    stand-in POST -> event on a watch      p50 %.0f us, p99 %.0f us" % (pe["standin_us"]["p50"], pe["standin_us"]["p99"]))
        p("    event on the wire -> agent log line    p50 %.0f us, p99 %.0f us" % (pe["agent_share_us"]["p50"], pe["agent_share_us"]["p99"]))
        p("  RSS after initial sync %.0f kB, at end %.0f kB, peak (VmHWM) %.0f kB   (target <= 153600 = 150 MiB)  %s" %
          (s["rss_after_sync_kb"], s["rss_end_kb"], s["hwm_end_kb"],
           "OK" if o["targets"]["rss_le_150MiB"] else "MISSED"))
        if o["targets"]["rss_le_150MiB"] and not o["targets"]["rss_le_150MB"]:
            p("    note: peak %.1f MiB = %.1f MB: within 150 MiB, over 150 MB (10^6 B)" %
              (s["hwm_end_kb"] / 1024, s["hwm_end_kb"] * 1024 / 1e6))
        for b, d in o["iptables"].items():
            p("")
            p("kube-proxy iptables equivalent (iptables-%s-restore, %d lines, %d rules)" % (b, d["rules_lines"], d["rules"]))
            p("  full restore into empty tables           : %8.0f ms   = %sx sluice cold (from start), %sx from API line, %sx sluice map programming" %
              (d["full_restore_ms"], d["ratio_full_restore_over_sluice_cold"],
               d["ratio_full_restore_over_sluice_cold_from_api"], d["ratio_full_restore_over_sluice_programming"]))
            if d["partial_p50_us"]:
                p("  one endpoint change (partial restore)    : p50 %8.0f us, max %.0f us = %sx sluice trigger->map p50, %sx sluice took p50" %
                  (d["partial_p50_us"], d["partial_max_us"], d["ratio_partial_p50_over_sluice_event_p50"],
                   d["ratio_partial_p50_over_sluice_took_p50"]))
            if d["resync_ms"]:
                p("  restart = full resync over existing rules: %8.0f ms   = %sx sluice restart" %
                  (d["resync_ms"], d["ratio_resync_over_sluice_restart"]))
        p("")

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                    p.wait(10)
                except Exception:  # noqa: BLE001
                    try:
                        p.kill()
                        p.wait(5)
                    except Exception:  # noqa: BLE001
                        pass
        if self.agent_bin and self.bpffs_mounted and self.netns in self.netns_list:
            run(["nsenter", "--net=/run/netns/" + self.netns, self.agent_bin, "--cleanup",
                 "--bpffs-root", self.bpffs], timeout=60, check=False)
        for ns in list(self.netns_list):
            self.netns_del(ns)
        if self.bpffs_mounted:
            run(["umount", self.bpffs], check=False)
            self.bpffs_mounted = False
        if self.args.keep_tmp:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="sluice control-plane benchmark (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="1k services / 10k endpoints smoke run")
    ap.add_argument("--services", type=int)
    ap.add_argument("--endpoints", type=int)
    ap.add_argument("--per-slice", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--distribution", choices=["even", "zipf"], default="even")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each (interleaved)")
    ap.add_argument("--changes", type=int, help="single-endpoint changes per sluice round (200)")
    ap.add_argument("--iptables-changes", type=int,
                    help="partial iptables-restore changes per iptables round (3; 20 with --quick)")
    ap.add_argument("--iptables-backend", default="legacy",
                    help="comma list of legacy,nft (nft is ~20x slower at this size)")
    ap.add_argument("--no-iptables", action="store_true", help="skip the kube-proxy comparison")
    ap.add_argument("--no-iptables-resync", action="store_true")
    ap.add_argument("--install-iptables", action="store_true",
                    help="apt-get install iptables if missing (otherwise the comparison is skipped)")
    ap.add_argument("--agent", default=os.path.join(REPO, "build/bin/sluice-agent"))
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--sync-timeout", type=float, default=120.0)
    ap.add_argument("--event-timeout", type=float, default=10.0)
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="multiply the 600 s total budget")
    ap.add_argument("--json-out", help="write the full result JSON here")
    ap.add_argument("--keep-tmp", action="store_true")
    a = ap.parse_args(argv)
    if a.services is None:
        a.services = 1000 if a.quick else 10000
    if a.endpoints is None:
        a.endpoints = 10000 if a.quick else 100000
    if a.changes is None:
        a.changes = 50 if a.quick else 200
    if a.iptables_changes is None:
        a.iptables_changes = 20 if a.quick else 3
    return a


def main(argv=None):
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("control_plane.py: needs root (BPF maps, bpffs mount, network namespaces); skipping",
              file=sys.stderr)
        return 77
    for tool in ("ip", "nsenter", "mount", "umount"):
        if shutil.which(tool) is None:
            print("control_plane.py: %s not found; skipping" % tool, file=sys.stderr)
            return 77
    b = Bench(a)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        b.main()
        return 0
    except BenchError as e:
        log("FAILED: %s" % e)
        a.keep_tmp = True
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
