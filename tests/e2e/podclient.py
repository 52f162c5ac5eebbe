#!/usr/bin/python3
"""Pod client for the sluice e2e tests (run inside a pod network namespace).

Every subcommand is bounded: a count, a per-call socket timeout and an overall
deadline. Each prints one human-readable summary line and one JSON line on
stdout, then a verdict line ("OK ..." or "FAIL ..."); the exit code is 0 when
all the assertions given on the command line hold, 1 otherwise, 2 on usage
errors.

  http URL          N fresh TCP connections (new source port each), one GET each
  udp HOST PORT     N datagrams, a fresh socket (new source port) each
  persist URL       K keep-alive connections, one GET on each every interval,
                    until --stop-file appears (+ --extra-rounds) or --max-duration
  conns URL         new connections back to back (one GET each) until --stop-file
                    appears (or --max / --max-duration); progress "N ERRORS" in
                    --count-file; backends listed in --forbid-file (when it appears)
                    must not answer a connection opened after that
  streams URL       K long-lived streams (GET /stream: a line every --interval-ms)
                    until --stop-file; a stream breaks on an error, a gap longer
                    than --max-gap or a lost line
  reuse URL         service connection from port P, then direct to its backend
                    from the same port P: must work (stale NAT state must not hit)
  refused HOST PORT TCP connect must fail with ECONNREFUSED within --within s
  ping HOST         ICMP/ICMPv6 echo until one reply or --deadline (reachability)
  blackhole HOST PORT  TCP connect must time out (silently dropped: no RST, no
                    ICMP error, no answer) within --timeout, each of --count tries
  upload URL        one POST of --bytes bytes on a fresh connection; the server
                    must answer "NAME received N" within --timeout
  ports URL         one GET from each fixed local port --first-port..+count-1;
                    prints port -> backend; --save FILE / --compare FILE (the
                    same ports must reach the same backends, e.g. Maglev)

Assertions for http/udp: --expect a,b,c (each seen >= --min-each times),
--only (no backend outside --expect), --forbid x,y, --max-errors N.
With --peer (http: GET /peer; udp: datagrams "peer N") the server answers
"NAME IP PORT", the source it saw; --peer-expect a=IP,b=IP then requires that
every answer of backend a saw source IP (source preservation / SNAT).
"""

import argparse
import errno
import http.client
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse


def split_url(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit(f"usage: bad URL {url!r}")
    return u.hostname, u.port or 80, (u.path or "/")


def emit(summary, result, problems):
    print(summary, flush=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    if problems:
        print("FAIL " + "; ".join(problems), flush=True)
        return 1
    print("OK", flush=True)
    return 0


def csv(s):
    return [x for x in (s or "").split(",") if x]


def check_counts(args, backends, errors):
    problems = []
    expect = csv(args.expect)
    for b in expect:
        if backends.get(b, 0) < args.min_each:
            problems.append(f"backend {b} answered {backends.get(b, 0)} times "
                            f"(want >= {args.min_each})")
    if args.only:
        extra = sorted(set(backends) - set(expect))
        if extra:
            problems.append(f"unexpected backends answered: {extra}")
    for b in csv(args.forbid):
        if backends.get(b, 0):
            problems.append(f"forbidden backend {b} answered {backends[b]} times")
    if errors > args.max_errors:
        problems.append(f"{errors} errors (max {args.max_errors})")
    return problems


def fmt_counts(backends):
    return " ".join(f"{k}={v}" for k, v in sorted(backends.items())) or "(none)"


def peer_answer(body, peers):
    """'NAME IP PORT' (--peer answers) -> NAME, recording IP:PORT under NAME."""
    f = body.split()
    if len(f) == 3:
        peers.setdefault(f[0], []).append((f[1], int(f[2])))
        return f[0]
    return body


def check_peers(args, peers):
    problems = []
    for item in csv(getattr(args, "peer_expect", None)):
        b, _, want = item.partition("=")
        seen = sorted({ip for ip, _ in peers.get(b, [])})
        bad = [ip for ip in seen if ip != want]
        if bad:
            problems.append(f"backend {b} saw source {','.join(bad)} (want {want})")
    return problems


def fmt_peers(peers):
    if not peers:
        return ""
    parts = []
    for b, lst in sorted(peers.items()):
        ips = sorted({ip for ip, _ in lst})
        ports = sorted({p for _, p in lst})
        parts.append(f"{b} saw {'/'.join(ips)} (ports {ports[0]}..{ports[-1]}, "
                     f"{len(ports)} distinct)")
    return "; peers: " + "; ".join(parts)


def gave_up(args, errors, sent):
    """Stop early when nothing works: a broken datapath must fail fast, not
    burn count x timeout seconds."""
    return args.give_up_after > 0 and errors >= args.give_up_after and errors == sent


def stop_reason(args, errors, sent, what):
    if gave_up(args, errors, sent):
        return (f"gave up after the first {sent} {what} all failed "
                f"(not counted: {args.count - sent})")
    return f"deadline {args.deadline}s hit after {sent} {what}"


# ---------------------------------------------------------------- http
def http_once(host, port, path, timeout):
    """One GET on a fresh connection; returns the body (pod name)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        body = r.read().decode(errors="replace").strip()
        if r.status != 200:
            raise RuntimeError(f"HTTP status {r.status}")
        return body
    finally:
        conn.close()


def cmd_http(args):
    host, port, path = split_url(args.url)
    if args.peer:
        path = "/peer"
    peers = {}
    backends, errors, refused, samples = {}, 0, 0, []
    end = time.monotonic() + args.deadline
    sent = 0
    for _ in range(args.count):
        if time.monotonic() > end or gave_up(args, errors, sent):
            break
        sent += 1
        try:
            b = http_once(host, port, path, args.timeout)
            if args.peer:
                b = peer_answer(b, peers)
            backends[b] = backends.get(b, 0) + 1
        except ConnectionRefusedError as e:
            refused += 1
            errors += 1
            if len(samples) < 5:
                samples.append(f"refused: {e}")
        except Exception as e:  # timeout, reset, bad response
            errors += 1
            if len(samples) < 5:
                samples.append(f"{type(e).__name__}: {e}")
    if sent < args.count:
        samples.append(stop_reason(args, errors, sent, "connections"))
        errors += args.count - sent
    res = {"backends": backends, "errors": errors, "refused": refused,
           "count": args.count, "error_samples": samples, "peers": peers}
    summary = (f"http {args.url} x{args.count}: {fmt_counts(backends)} "
               f"errors={errors} refused={refused}{fmt_peers(peers)}")
    if samples:
        summary += "\n  errors: " + "; ".join(samples)
    return emit(summary, res, check_counts(args, backends, errors) + check_peers(args, peers))


# ---------------------------------------------------------------- udp
def cmd_udp(args):
    backends, errors, samples, peers = {}, 0, [], {}
    end = time.monotonic() + args.deadline
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sent = 0
    for i in range(args.count):
        if time.monotonic() > end or gave_up(args, errors, sent):
            break
        sent += 1
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(args.timeout)
        lport = None
        try:
            s.connect((args.host, args.port))
            lport = s.getsockname()[1]
            s.send(f"{'peer' if args.peer else 'ping'} {i}".encode())
            data = s.recv(2048)
            b = data.decode(errors="replace").strip()
            if args.peer:
                b = peer_answer(b, peers)
            backends[b] = backends.get(b, 0) + 1
        except Exception as e:
            errors += 1
            if len(samples) < 5:
                # the local port tells a stale-NAT-state hit apart from a lost packet
                samples.append(f"{type(e).__name__}: {e} (local port {lport})")
        finally:
            s.close()
    if sent < args.count:
        samples.append(stop_reason(args, errors, sent, "datagrams"))
        errors += args.count - sent
    res = {"backends": backends, "errors": errors, "count": args.count,
           "error_samples": samples, "peers": peers}
    summary = (f"udp {args.host}:{args.port} x{args.count}: {fmt_counts(backends)} "
               f"errors={errors}{fmt_peers(peers)}")
    if samples:
        summary += "\n  errors: " + "; ".join(samples)
    return emit(summary, res, check_counts(args, backends, errors) + check_peers(args, peers))


# ---------------------------------------------------------------- persist
class PersistConn:
    def __init__(self, idx, host, port, timeout):
        self.idx = idx
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.backend = None
        self.requests = 0
        self.failures = 0
        self.switched = 0
        self.alive = True
        self.error = None
        self.failed_at = None

    def request(self, path, round_no):
        if not self.alive:
            return
        try:
            self.conn.request("GET", path)  # HTTP/1.1: keep-alive by default
            r = self.conn.getresponse()
            body = r.read().decode(errors="replace").strip()
            if r.status != 200:
                raise RuntimeError(f"HTTP status {r.status}")
            if r.getheader("Connection", "").lower() == "close":
                raise RuntimeError("server closed the keep-alive connection")
            self.requests += 1
            if self.backend is None:
                self.backend = body
            elif body != self.backend:
                self.switched += 1
                raise RuntimeError(f"backend changed {self.backend} -> {body}")
        except Exception as e:
            self.failures += 1
            self.alive = False
            self.error = f"{type(e).__name__}: {e}"
            self.failed_at = round_no
            self.conn.close()

    def as_dict(self):
        return {"conn": self.idx, "backend": self.backend, "requests": self.requests,
                "failures": self.failures, "switched": self.switched,
                "alive": self.alive, "error": self.error, "failed_at_round": self.failed_at}


def cmd_persist(args):
    host, port, path = split_url(args.url)
    conns = [PersistConn(i, host, port, args.timeout) for i in range(args.conns)]
    start = time.monotonic()
    end = start + args.max_duration
    rounds, stop_round, ready = 0, None, False
    problems = []
    while True:
        t0 = time.monotonic()
        if t0 > end:
            problems.append(f"max duration {args.max_duration}s reached before the "
                            f"stop file appeared (+{args.extra_rounds} rounds)")
            break
        for c in conns:
            c.request(path, rounds)
        rounds += 1
        if not ready:
            bad = [c.as_dict() for c in conns if not c.alive]
            if bad:
                problems.append(f"connections failed before ready: {bad}")
                break
            ready = True
            if args.ready_file:
                tmp = args.ready_file + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({c.idx: c.backend for c in conns}, f)
                os.replace(tmp, args.ready_file)
        if stop_round is None and args.stop_file and os.path.exists(args.stop_file):
            stop_round = rounds
        if stop_round is not None and rounds - stop_round >= args.extra_rounds:
            break
        if not any(c.alive for c in conns):
            problems.append("all connections failed")
            break
        delay = args.interval - (time.monotonic() - t0)
        if delay > 0:
            time.sleep(delay)

    removed = set(csv(args.removed))
    by_backend = {}
    for c in conns:
        by_backend.setdefault(c.backend or "(none)", []).append(c)
    for c in conns:
        if c.backend in removed:
            continue
        if c.failures or c.switched or not c.alive:
            problems.append(f"conn {c.idx} to kept backend {c.backend} failed: "
                            f"{c.error} (round {c.failed_at})")
    per = []
    for b, cs in sorted(by_backend.items()):
        fails = sum(1 for c in cs if c.failures)
        tag = " (removed)" if b in removed else ""
        per.append(f"{b}{tag}: {len(cs)} conns, {sum(c.requests for c in cs)} reqs, "
                   f"{fails} failed")
    res = {"rounds": rounds, "stop_round": stop_round,
           "elapsed_s": round(time.monotonic() - start, 2),
           "conns": [c.as_dict() for c in conns]}
    summary = (f"persist {args.url} {args.conns} conns, {rounds} rounds "
               f"(stop at {stop_round}): " + "; ".join(per))
    return emit(summary, res, problems)


# ---------------------------------------------------------------- conns
def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_conns(args):
    host, port, path = split_url(args.url)
    expect = set(csv(args.expect))
    t0 = time.monotonic()
    end = t0 + args.max_duration
    n = errors = violated = 0
    backends, samples, violations = {}, [], []
    forbidden, forbid_since = set(), None
    last = 0.0

    def progress():
        if args.count_file:
            write_atomic(args.count_file, f"{n} {errors}\n")

    while n < args.max and time.monotonic() < end and not (
            args.stop_file and os.path.exists(args.stop_file)):
        if args.forbid_file and forbid_since is None and os.path.exists(args.forbid_file):
            with open(args.forbid_file) as f:
                forbidden = set(csv(f.read().strip()))
            forbid_since = n + 1
        n += 1
        t = time.monotonic() - t0
        try:
            b = http_once(host, port, path, args.timeout)
            backends[b] = backends.get(b, 0) + 1
            if b in forbidden:
                violated += 1
                if len(violations) < 10:
                    violations.append(f"t={t:.3f}s #{n}: {b} answered after it was removed")
        except Exception as e:
            errors += 1
            if len(samples) < 10:
                samples.append(f"t={t:.3f}s #{n}: {type(e).__name__}: {e}")
        if time.monotonic() - last >= 0.1:
            progress()
            last = time.monotonic()
    progress()
    el = max(time.monotonic() - t0, 1e-6)
    problems = []
    if errors > args.max_errors:
        problems.append(f"{errors} of {n} connections failed")
    bad = sorted(set(backends) - expect) if expect else []
    if bad:
        problems.append(f"unexpected backends {bad}")
    if violated:
        problems.append(f"{violated} connections reached a removed backend")
    if args.stop_file and not os.path.exists(args.stop_file):
        problems.append("ended before the stop file appeared")
    res = {"count": n, "errors": errors, "backends": backends, "error_samples": samples,
           "forbidden": sorted(forbidden), "forbidden_from": forbid_since,
           "violated": violated, "violations": violations, "elapsed_s": round(el, 2)}
    summary = (f"conns {args.url}: {n} new connections in {el:.1f}s ({n / el:.0f}/s): "
               f"{fmt_counts(backends)} errors={errors}")
    if forbid_since is not None:
        summary += f"; {','.join(sorted(forbidden))} removed from connection #{forbid_since} on"
    for line in samples + violations:
        summary += "\n  " + line
    return emit(summary, res, problems)


# ---------------------------------------------------------------- streams
class StreamConn(threading.Thread):
    """One GET /stream: reads "NAME SEQ" lines; broken on an error, EOF, a gap, a lost line."""

    def __init__(self, idx, host, port, interval_ms, max_gap):
        super().__init__(daemon=True)
        self.idx, self.max_gap = idx, max_gap
        self.conn = http.client.HTTPConnection(host, port, timeout=max_gap)
        self.path = f"/stream?interval_ms={interval_ms}"
        self.backend = None
        self.lines = 0
        self.worst_gap = 0.0
        self.error = None
        self.broken_at = None
        self.started = threading.Event()
        self.stopping = False

    def run(self):
        t0 = time.monotonic()
        try:
            self.conn.request("GET", self.path)
            r = self.conn.getresponse()
            if r.status != 200:
                raise RuntimeError(f"HTTP status {r.status}")
            expect_seq, last = 0, time.monotonic()
            while not self.stopping:
                line = r.readline()
                now = time.monotonic()
                if not line:
                    raise RuntimeError("stream ended")
                name, seq = line.decode().split()
                if self.backend is None:
                    self.backend = name
                    self.started.set()
                elif name != self.backend:
                    raise RuntimeError(f"backend changed {self.backend} -> {name}")
                if int(seq) != expect_seq:
                    raise RuntimeError(f"line {expect_seq} expected, got {seq}")
                expect_seq += 1
                self.lines += 1
                self.worst_gap = max(self.worst_gap, now - last)
                last = now
        except Exception as e:
            if not self.stopping:
                self.error = f"{type(e).__name__}: {e}"
                self.broken_at = round(time.monotonic() - t0, 3)
        finally:
            self.started.set()
            self.conn.close()

    def stop(self):
        self.stopping = True
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def cmd_streams(args):
    host, port, _ = split_url(args.url)
    conns = [StreamConn(i, host, port, args.interval_ms, args.max_gap) for i in range(args.conns)]
    for c in conns:
        c.start()
    end = time.monotonic() + args.max_duration
    for c in conns:
        c.started.wait(max(0.0, end - time.monotonic()))
    problems = []
    failed_early = [c for c in conns if c.error]
    if failed_early:
        problems.append("streams failed before ready: " +
                        "; ".join(f"#{c.idx}: {c.error}" for c in failed_early))
    elif args.ready_file:
        write_atomic(args.ready_file, json.dumps({c.idx: c.backend for c in conns}))
    while not failed_early and time.monotonic() < end and not (
            args.stop_file and os.path.exists(args.stop_file)):
        if all(c.error for c in conns):
            break
        time.sleep(0.05)
    if args.stop_file and not os.path.exists(args.stop_file) and not failed_early:
        problems.append(f"max duration {args.max_duration}s reached before the stop file")
    for c in conns:
        c.stop()
    for c in conns:
        c.join(5)
    removed = set(csv(args.removed))
    by_backend = {}
    for c in conns:
        by_backend.setdefault(c.backend or "(none)", []).append(c)
        if c.error and c.backend not in removed:
            problems.append(f"stream #{c.idx} to {c.backend} broke after {c.broken_at}s: {c.error}")
    per = []
    for b, cs in sorted(by_backend.items()):
        tag = " (removed)" if b in removed else ""
        per.append(f"{b}{tag}: {len(cs)} streams, {sum(c.lines for c in cs)} lines, "
                   f"{sum(1 for c in cs if c.error)} broken, "
                   f"longest gap {max(c.worst_gap for c in cs) * 1000:.0f} ms")
    res = {"streams": [{"idx": c.idx, "backend": c.backend, "lines": c.lines,
                        "worst_gap_ms": round(c.worst_gap * 1000), "error": c.error,
                        "broken_at_s": c.broken_at} for c in conns]}
    summary = f"streams {args.url} x{args.conns} (a line every {args.interval_ms} ms): " + "; ".join(per)
    return emit(summary, res, problems)


# ---------------------------------------------------------------- reuse
def http_from_port(host, port, sport, timeout):
    """One GET from a fixed local port (SO_REUSEADDR); returns the body."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        s.bind(("", sport))
        s.connect((host, port))
        s.sendall(f"GET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 65536:
            d = s.recv(4096)
            if not d:
                break
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"bad response {head[:40]!r}")
        return body.decode(errors="replace").strip()
    finally:
        s.close()


def cmd_reuse(args):
    """A service connection from local port P, closed; then a direct connection to
    the backend it reached, from the same port P (clients reuse ports freely when
    the server closed first). The second must not be mistaken for the first."""
    host, port, _ = split_url(args.url)
    direct = dict(x.split("=", 1) for x in csv(args.direct))
    problems, lines, res = [], [], []
    end = time.monotonic() + args.deadline
    for i in range(args.count):
        if time.monotonic() > end:
            problems.append(f"deadline {args.deadline}s hit after {i} rounds")
            break
        sport = args.first_port + i
        try:
            b = http_from_port(host, port, sport, args.timeout)
        except Exception as e:
            problems.append(f"port {sport}: service connection failed: {type(e).__name__}: {e}")
            continue
        if b not in direct:
            problems.append(f"port {sport}: service answered by unknown backend {b!r}")
            continue
        t0 = time.monotonic()
        try:
            d = http_from_port(direct[b], args.direct_port, sport, args.timeout)
            outcome = f"ok ({d})" if d == b else f"WRONG backend {d}"
            if d != b:
                problems.append(f"port {sport}: direct {direct[b]} answered as {d}")
        except Exception as e:
            outcome = f"FAILED {type(e).__name__}: {e}"
            problems.append(f"port {sport}: direct connection to {direct[b]}:{args.direct_port} "
                            f"after a service connection from the same port failed: "
                            f"{type(e).__name__}: {e} after {time.monotonic() - t0:.3f}s")
        lines.append(f"port {sport}: service -> {b}, then direct {direct[b]}:{args.direct_port} "
                     f"-> {outcome}")
        res.append({"port": sport, "backend": b, "direct": outcome})
    summary = "reuse " + args.url + ":\n" + "\n".join(lines)
    return emit(summary, {"rounds": res}, problems)


# ---------------------------------------------------------------- refused
def cmd_refused(args):
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    results, problems = [], []
    for i in range(args.count):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        t0 = time.monotonic()
        try:
            s.connect((args.host, args.port))
            outcome = "connected"
        except ConnectionRefusedError:
            outcome = "refused"
        except socket.timeout:
            outcome = "timeout"
        except OSError as e:
            outcome = errno.errorcode.get(e.errno, str(e))
        finally:
            s.close()
        dt = time.monotonic() - t0
        results.append({"outcome": outcome, "seconds": round(dt, 4)})
        if outcome != "refused":
            problems.append(f"attempt {i}: {outcome} after {dt:.3f}s (want ECONNREFUSED)")
        elif dt >= args.within:
            problems.append(f"attempt {i}: refused only after {dt:.3f}s "
                            f"(want < {args.within}s)")
    worst = max(r["seconds"] for r in results)
    summary = (f"refused {args.host}:{args.port} x{args.count}: "
               + ", ".join(f"{r['outcome']} {r['seconds']:.3f}s" for r in results)
               + f" (slowest {worst:.3f}s)")
    return emit(summary, {"attempts": results}, problems)


# ---------------------------------------------------------------- blackhole
def cmd_blackhole(args):
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    results, problems = [], []
    for i in range(args.count):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        t0 = time.monotonic()
        try:
            s.connect((args.host, args.port))
            outcome = "connected"
        except ConnectionRefusedError:
            outcome = "refused"
        except socket.timeout:
            outcome = "timeout"
        except OSError as e:
            outcome = errno.errorcode.get(e.errno, str(e))
        finally:
            s.close()
        dt = time.monotonic() - t0
        results.append({"outcome": outcome, "seconds": round(dt, 4)})
        if outcome != "timeout":
            problems.append(f"attempt {i}: {outcome} after {dt:.3f}s (want a silent drop: "
                            f"timeout after {args.timeout}s)")
    summary = (f"blackhole {args.host}:{args.port} x{args.count}: "
               + ", ".join(f"{r['outcome']} {r['seconds']:.3f}s" for r in results))
    return emit(summary, {"attempts": results}, problems)


# ---------------------------------------------------------------- upload
def cmd_upload(args):
    host, port, path = split_url(args.url)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    problems = []
    t0 = time.monotonic()
    sent, body, mss = 0, b"", None
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect((host, port))
        lport = s.getsockname()[1]
        deadline = t0 + args.timeout
        hdr = (f"POST {path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n"
               f"Content-Length: {args.bytes}\r\n\r\n").encode()
        s.sendall(hdr)
        chunk = bytes(range(256)) * 256  # 64 KiB
        while sent < args.bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"deadline after {sent} of {args.bytes} bytes")
            s.settimeout(left)
            n = s.send(chunk[:min(len(chunk), args.bytes - sent)])
            sent += n
        data = b""
        while len(data) < 65536:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("deadline waiting for the answer")
            s.settimeout(left)
            d = s.recv(4096)
            if not d:
                break
            data += d
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        except OSError:
            pass
        if not head.startswith(b"HTTP/1.1 200"):
            problems.append(f"bad response {head[:60]!r}")
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e} after {sent} of {args.bytes} bytes "
                        f"(local port {locals().get('lport')})")
    finally:
        s.close()
    dt = time.monotonic() - t0
    text = body.decode(errors="replace").strip()
    f = text.split()
    if not problems and not (len(f) == 3 and f[1] == "received" and f[2] == str(args.bytes)):
        problems.append(f"server answered {text!r} (want 'NAME received {args.bytes}')")
    if not problems and args.expect and f[0] not in csv(args.expect):
        problems.append(f"answered by {f[0]} (want one of {args.expect})")
    summary = (f"upload {args.url} {args.bytes} bytes: sent {sent} in {dt:.2f}s, "
               f"answer {text!r}, final MSS {mss}")
    return emit(summary, {"sent": sent, "seconds": round(dt, 3), "answer": text, "mss": mss},
                problems)


# ---------------------------------------------------------------- download
def cmd_download(args):
    """GET /bytes/N: every byte must arrive within --timeout (a path MTU blackhole stalls)."""
    host, port, _ = split_url(args.url)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    problems, got, pod, head = [], 0, "", b""
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect((host, port))
        s.sendall((f"GET /bytes/{args.bytes} HTTP/1.1\r\nHost: e2e\r\n"
                   "Connection: close\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            d = s.recv(4096)
            if not d:
                raise ConnectionError("closed before the headers")
            data += d
        head, _, rest = data.partition(b"\r\n\r\n")
        got = len(rest)
        while got < args.bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"deadline after {got} of {args.bytes} bytes")
            s.settimeout(left)
            d = s.recv(65536)
            if not d:
                break
            got += len(d)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"x-pod:"):
                pod = line.split(b":", 1)[1].strip().decode()
        if not head.startswith(b"HTTP/1.1 200"):
            problems.append(f"bad response {head[:60]!r}")
        elif got != args.bytes:
            problems.append(f"got {got} of {args.bytes} bytes")
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e} ({got} of {args.bytes} bytes)")
    finally:
        s.close()
    dt = time.monotonic() - t0
    if not problems and args.expect and pod not in csv(args.expect):
        problems.append(f"served by {pod} (want one of {args.expect})")
    summary = f"download {args.url} {args.bytes} bytes: got {got} from {pod or '?'} in {dt:.2f}s"
    return emit(summary, {"bytes": got, "seconds": round(dt, 3), "pod": pod}, problems)


# ---------------------------------------------------------------- udp-pmtu
# Linux values (socket module names vary by Python build): IP_MTU_DISCOVER, IP_PMTUDISC_DO,
# IP_MTU; IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_MTU.
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_MTU = 23, 2, 24


def cmd_udp_pmtu(args):
    """A connected UDP socket with DF (IP_PMTUDISC_DO) sends a datagram of --l3-size bytes
    (IP header included) and resends, smaller, when the path announces a smaller MTU
    (EMSGSIZE, then IP_MTU), until an echo comes back."""
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    v6 = fam == socket.AF_INET6
    overhead = 48 if v6 else 28
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    steps, problems, delivered, learnt, answer = [], [], None, None, ""
    size = args.l3_size
    end = time.monotonic() + args.deadline

    def path_mtu():
        return s.getsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP,
                            IPV6_MTU if v6 else IP_MTU)

    try:
        s.connect((args.host, args.port))
        while delivered is None and time.monotonic() < end:
            try:
                s.send(b"m" * (size - overhead))
                s.settimeout(min(args.timeout, max(end - time.monotonic(), 0.001)))
                answer = s.recv(2048).decode(errors="replace")
                delivered = size
                steps.append(f"{size}: answered by {answer}")
            except socket.timeout:
                steps.append(f"{size}: no answer")
            except OSError as e:
                if e.errno != errno.EMSGSIZE:
                    raise
                learnt = path_mtu()
                steps.append(f"{size}: EMSGSIZE, path MTU {learnt}")
                if learnt >= size:
                    problems.append(f"EMSGSIZE but the path MTU {learnt} is not smaller")
                    break
                size = learnt
    except Exception as e:
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        s.close()
    if delivered is None and not problems:
        problems.append(f"no answer within {args.deadline}s")
    if args.expect_mtu is not None and learnt != args.expect_mtu:
        problems.append(f"path MTU learnt {learnt}, want {args.expect_mtu}")
    if args.expect_mtu is None and delivered is not None and delivered != args.l3_size:
        problems.append(f"delivered at {delivered} bytes only, want {args.l3_size} at once")
    if delivered is not None and args.expect and answer not in csv(args.expect):
        problems.append(f"answered by {answer!r} (want one of {args.expect})")
    summary = f"udp-pmtu {args.host}:{args.port} from {args.l3_size} bytes: " + "; ".join(steps)
    return emit(summary, {"delivered": delivered, "mtu": learnt, "steps": steps}, problems)


# ---------------------------------------------------------------- ports
def cmd_ports(args):
    host, port, _ = split_url(args.url)
    mapping, problems = {}, []
    end = time.monotonic() + args.deadline
    for i in range(args.count):
        if time.monotonic() > end:
            problems.append(f"deadline {args.deadline}s hit after {i} ports")
            break
        sport = args.first_port + i
        try:
            mapping[str(sport)] = http_from_port(host, port, sport, args.timeout)
        except Exception as e:
            mapping[str(sport)] = None
            problems.append(f"port {sport}: {type(e).__name__}: {e}")
    lines = [f"port {p} -> {b}" for p, b in mapping.items()]
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        same = 0
        for p, b in mapping.items():
            if b is None:
                continue
            if before.get(p) != b:
                problems.append(f"port {p}: {before.get(p)} before, {b} now")
            else:
                same += 1
        lines.append(f"{same} of {len(mapping)} ports reached the same backend as in "
                     f"{os.path.basename(args.compare)}")
    if args.save:
        tmp = args.save + ".tmp"
        with open(tmp, "w") as f:
            json.dump(mapping, f)
        os.replace(tmp, args.save)
    summary = f"ports {args.url}:\n" + "\n".join(lines)
    return emit(summary, {"mapping": mapping}, problems)


# ---------------------------------------------------------------- ping
def inet_csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def cmd_ping(args):
    addr = ipaddress.ip_address(args.host)
    v6 = addr.version == 6
    if v6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    ident = os.getpid() & 0xFFFF
    start = time.monotonic()
    end = start + args.deadline
    seq, next_send, got = 0, 0.0, None
    while time.monotonic() < end and got is None:
        now = time.monotonic()
        if now >= next_send and seq < args.max_probes:
            seq += 1
            payload = b"sluice-e2e"
            hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
            # the kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets
            csum = 0 if v6 else inet_csum(hdr + payload)
            pkt = struct.pack("!BBHHH", req_type, 0, csum, ident, seq) + payload
            try:
                s.sendto(pkt, (args.host, 0))
            except OSError:
                pass  # e.g. EHOSTUNREACH while neighbours resolve: retry
            next_send = now + args.interval
        wait = max(0.0, min(end, next_send) - time.monotonic())
        r, _, _ = select.select([s], [], [], min(wait, 0.1) or 0.01)
        if not r:
            continue
        data, peer = s.recvfrom(2048)
        if not v6:
            data = data[(data[0] & 0x0F) * 4:]  # strip the IPv4 header
        if len(data) < 8 or ipaddress.ip_address(peer[0].split("%")[0]) != addr:
            continue
        t, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
        if t == rep_type and rid == ident:
            got = (rseq, time.monotonic() - start)
    s.close()
    if got:
        summary = f"ping {args.host}: reply to probe {got[0]} after {got[1]:.3f}s"
        return emit(summary, {"reply": True, "probes": seq}, [])
    summary = f"ping {args.host}: no reply in {args.deadline}s ({seq} probes)"
    return emit(summary, {"reply": False, "probes": seq}, [f"{args.host} unreachable"])


def main():
    ap = argparse.ArgumentParser(description="sluice e2e pod client")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def asserts(p):
        p.add_argument("--expect", help="comma list: each must answer >= --min-each")
        p.add_argument("--min-each", type=int, default=1)
        p.add_argument("--only", action="store_true",
                       help="fail if a backend outside --expect answers")
        p.add_argument("--forbid", help="comma list: must never answer")
        p.add_argument("--max-errors", type=int, default=0)
        p.add_argument("--give-up-after", type=int, default=5,
                       help="stop when the first N attempts all failed (0: never)")

    def peer(p):
        p.add_argument("--peer", action="store_true",
                       help="ask the server for the source it saw (NAME IP PORT answers)")
        p.add_argument("--peer-expect", help="comma list backend=IP: the source each saw")

    p = sub.add_parser("http")
    peer(p)
    p.add_argument("url")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--timeout", type=float, default=2.0, help="per connection")
    p.add_argument("--deadline", type=float, default=60.0, help="overall")
    asserts(p)
    p.set_defaults(fn=cmd_http)

    p = sub.add_parser("udp")
    peer(p)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--timeout", type=float, default=1.0, help="per datagram")
    p.add_argument("--deadline", type=float, default=60.0, help="overall")
    asserts(p)
    p.set_defaults(fn=cmd_udp)

    p = sub.add_parser("persist")
    p.add_argument("url")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=2.0, help="per request")
    p.add_argument("--ready-file", help="written after the first round succeeded")
    p.add_argument("--stop-file", help="its appearance ends the run (+ extra rounds)")
    p.add_argument("--extra-rounds", type=int, default=10)
    p.add_argument("--max-duration", type=float, default=60.0)
    p.add_argument("--removed", help="comma list of backends whose conns may fail")
    p.set_defaults(fn=cmd_persist)

    p = sub.add_parser("conns")
    p.add_argument("url")
    p.add_argument("--stop-file", help="its appearance ends the run")
    p.add_argument("--count-file", help="progress: 'CONNECTIONS ERRORS', every 0.1 s")
    p.add_argument("--forbid-file", help="comma list of backends removed from the service")
    p.add_argument("--expect", help="comma list: no other backend may answer")
    p.add_argument("--max", type=int, default=100000)
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--max-errors", type=int, default=0)
    p.add_argument("--timeout", type=float, default=2.0, help="per connection")
    p.set_defaults(fn=cmd_conns)

    p = sub.add_parser("streams")
    p.add_argument("url")
    p.add_argument("--conns", type=int, default=4)
    p.add_argument("--interval-ms", type=int, default=50)
    p.add_argument("--max-gap", type=float, default=2.0,
                   help="seconds without a line that break a stream")
    p.add_argument("--ready-file", help="written once every stream delivered its first line")
    p.add_argument("--stop-file", help="its appearance ends the run")
    p.add_argument("--max-duration", type=float, default=120.0)
    p.add_argument("--removed", help="comma list of backends whose streams may break")
    p.set_defaults(fn=cmd_streams)

    p = sub.add_parser("reuse")
    p.add_argument("url", help="service URL")
    p.add_argument("--direct", required=True, help="comma list backend=IP")
    p.add_argument("--direct-port", type=int, default=8080)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--first-port", type=int, default=41000,
                   help="local ports first-port .. first-port+count-1")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--deadline", type=float, default=30.0)
    p.set_defaults(fn=cmd_reuse)

    p = sub.add_parser("refused")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--timeout", type=float, default=2.0, help="per connect")
    p.add_argument("--within", type=float, default=1.0,
                   help="ECONNREFUSED must arrive before this many seconds")
    p.set_defaults(fn=cmd_refused)

    p = sub.add_parser("blackhole")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1.0, help="per connect")
    p.set_defaults(fn=cmd_blackhole)

    p = sub.add_parser("upload")
    p.add_argument("url")
    p.add_argument("--bytes", type=int, default=2 << 20)
    p.add_argument("--timeout", type=float, default=20.0, help="whole transfer")
    p.add_argument("--expect", help="comma list: the backend must be one of these")
    p.set_defaults(fn=cmd_upload)

    p = sub.add_parser("download")
    p.add_argument("url", help="http://HOST:PORT (GET /bytes/N)")
    p.add_argument("--bytes", type=int, default=2 << 20)
    p.add_argument("--timeout", type=float, default=20.0, help="whole transfer")
    p.add_argument("--expect", help="comma list: the server (X-Pod) must be one of these")
    p.set_defaults(fn=cmd_download)

    p = sub.add_parser("udp-pmtu")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--l3-size", type=int, default=1500, help="first datagram, IP header included")
    p.add_argument("--expect-mtu", type=int,
                   help="the path must announce this MTU (else: delivered at --l3-size at once)")
    p.add_argument("--timeout", type=float, default=1.0, help="per datagram")
    p.add_argument("--deadline", type=float, default=10.0, help="overall")
    p.add_argument("--expect", help="comma list: the answering backend must be one of these")
    p.set_defaults(fn=cmd_udp_pmtu)

    p = sub.add_parser("ports")
    p.add_argument("url")
    p.add_argument("--first-port", type=int, default=41000)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--save", help="write the port -> backend mapping (JSON) here")
    p.add_argument("--compare", help="a mapping saved before: every port must match it")
    p.set_defaults(fn=cmd_ports)

    p = sub.add_parser("ping")
    p.add_argument("host")
    p.add_argument("--deadline", type=float, default=5.0)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--max-probes", type=int, default=50)
    p.set_defaults(fn=cmd_ping)

    args = ap.parse_args()
    sys.exit(args.fn(args))


if __name__ == "__main__":
    main()
