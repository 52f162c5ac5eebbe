#!/usr/bin/python3
"""Socket-LB client for test_socklb.sh: what an application sees at the socket.

Run inside a network namespace (the node's or a pod's), normally inside the test's cgroup
(--cgroup DIR: the process moves itself there first). Every subcommand is bounded (counts,
socket timeouts, an overall deadline) and prints a summary line, a JSON line and a verdict
("OK" or "FAIL reasons"); exit 0 when every assertion holds, 1 otherwise, 2 on usage errors.

  reach HOST PORT   --proto tcp: N connections, each: connect, getpeername() must be
                    HOST:PORT, GET / answered by a backend (the pod name);
                    --proto udp: N datagrams from unconnected sockets (sendto, recvfrom: the
                    answer must come from HOST:PORT) and N from connected ones (getpeername
                    and recvfrom must show HOST:PORT)
  refused HOST PORT TCP connect, UDP connect and UDP sendto (to --udp-port) must each
                    fail with ECONNREFUSED within --within s
  unserved HOST PORT  TCP connect must not reach a backend within --timeout s (not
                    translated: the address itself, where nothing answers)
  dnsloop HOST PORT a DNS-like client on a fixed source port (--sport): a connected UDP
                    socket asks every --interval s; an error on the socket (the agent
                    destroyed it: ECONNABORTED) makes it open a new one on the same port.
                    --ready-file gets the first answering backend; from the time
                    --mark-file appears (the backend was removed), an answer from another
                    backend must come within --recover-within s and every query after that
                    must be answered; ends --after-recovery rounds after the recovery, or
                    at --stop-file (+ --extra-rounds), or after --max-duration

Assertions for reach: --expect a,b,c (each answered at least --min-each times), --only (no
other backend), --same (every answer from one backend: ClientIP affinity).
"""

import argparse
import errno
import json
import os
import socket
import sys
import time

from podclient import csv, emit  # same output contract as the other e2e clients


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def addr_text(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def err_name(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


def http_get(sock, timeout):
    sock.settimeout(timeout)
    sock.sendall(b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError("bad HTTP answer")
    return body.decode(errors="replace").strip()


def count_checks(args, backends, problems):
    for b in csv(args.expect):
        if backends.get(b, 0) < args.min_each:
            problems.append(f"backend {b} answered {backends.get(b, 0)} times "
                            f"(want >= {args.min_each})")
    if args.only:
        extra = sorted(set(backends) - set(csv(args.expect)))
        if extra:
            problems.append(f"unexpected backends answered: {extra}")
    if args.same and len(backends) > 1:
        problems.append(f"answers from {len(backends)} backends, want one (affinity)")


def cmd_reach(args):
    want = addr_text((args.host, args.port))
    backends, problems, samples, peers = {}, [], [], {}
    errors = 0
    end = time.monotonic() + args.deadline

    def note(what, value):
        peers[what] = peers.get(what, {})
        peers[what][value] = peers[what].get(value, 0) + 1
        if value != want and len(problems) < 5:
            problems.append(f"{what} showed {value}, want {want}")

    def once(kind):
        nonlocal errors
        s = socket.socket(family(args.host),
                          socket.SOCK_STREAM if args.proto == "tcp" else socket.SOCK_DGRAM)
        s.settimeout(args.timeout)
        try:
            if kind == "tcp":
                s.connect((args.host, args.port))
                note("getpeername", addr_text(s.getpeername()))
                b = http_get(s, args.timeout)
            elif kind == "udp-sendto":
                s.sendto(b"ping", (args.host, args.port))
                data, src = s.recvfrom(2048)
                note("recvfrom", addr_text(src))
                b = data.decode(errors="replace").strip()
            else:
                s.connect((args.host, args.port))
                note("getpeername", addr_text(s.getpeername()))
                s.send(b"ping")
                data, src = s.recvfrom(2048)
                note("recvfrom", addr_text(src))
                b = data.decode(errors="replace").strip()
            backends[b] = backends.get(b, 0) + 1
        except Exception as e:  # refused, timeout, reset
            errors += 1
            if len(samples) < 5:
                samples.append(f"{kind}: {err_name(e)} {e}")
        finally:
            s.close()

    kinds = ["tcp"] if args.proto == "tcp" else ["udp-sendto", "udp-connected"]
    done = 0
    for kind in kinds:
        for _ in range(args.count):
            if time.monotonic() > end:
                break
            once(kind)
            done += 1
    if done < args.count * len(kinds):
        problems.append(f"deadline: {done} of {args.count * len(kinds)} attempts made")
    if errors:
        problems.append(f"{errors} attempts failed: {'; '.join(samples)}")
    count_checks(args, backends, problems)
    res = {"backends": backends, "errors": errors, "peers": peers, "attempts": done}
    summary = (f"reach {args.proto} {want} x{done}: "
               + " ".join(f"{k}={v}" for k, v in sorted(backends.items()))
               + f" errors={errors} seen={json.dumps(peers, sort_keys=True)}")
    return emit(summary, res, problems)


def cmd_refused(args):
    outcomes, problems = {}, []

    def attempt(name, fn):
        s = socket.socket(family(args.host),
                          socket.SOCK_STREAM if name == "tcp-connect" else socket.SOCK_DGRAM)
        s.settimeout(args.within + 1)
        t0 = time.monotonic()
        try:
            fn(s)
            outcome = "succeeded"
        except OSError as e:
            outcome = err_name(e)
        finally:
            s.close()
        dt = time.monotonic() - t0
        outcomes[name] = {"outcome": outcome, "seconds": round(dt, 4)}
        if outcome != "ECONNREFUSED":
            problems.append(f"{name}: {outcome} (want ECONNREFUSED)")
        elif dt >= args.within:
            problems.append(f"{name}: refused only after {dt:.3f}s (want < {args.within}s)")

    dst = (args.host, args.port)
    udp = (args.host, args.udp_port or args.port)
    attempt("tcp-connect", lambda s: s.connect(dst))
    attempt("udp-connect", lambda s: s.connect(udp))
    attempt("udp-sendto", lambda s: s.sendto(b"ping", udp))
    summary = f"refused {addr_text(dst)} (UDP port {udp[1]}): " + ", ".join(
        f"{k} {v['outcome']} {v['seconds']:.3f}s" for k, v in outcomes.items())
    return emit(summary, outcomes, problems)


def cmd_unserved(args):
    s = socket.socket(family(args.host), socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect((args.host, args.port))
        outcome = "answered by " + http_get(s, args.timeout)
    except OSError as e:
        outcome = err_name(e)
    finally:
        s.close()
    problems = [] if not outcome.startswith("answered") else [f"{outcome}: it was translated"]
    return emit(f"unserved {addr_text((args.host, args.port))}: {outcome}",
                {"outcome": outcome}, problems)


def cmd_dnsloop(args):
    dst = (args.host, args.port)

    def open_socket():
        s = socket.socket(family(args.host), socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if ":" in args.host else "0.0.0.0", args.sport))
        s.settimeout(args.timeout)
        s.connect(dst)
        return s

    start = time.monotonic()
    end = start + args.max_duration
    rounds, reopens, reopen_reasons, log = 0, 0, {}, []
    first, mark_at, recovered_at, removed = None, None, None, None
    lost_after_recovery, extra, since_recovery = 0, None, 0
    s = open_socket()
    while time.monotonic() < end:
        if recovered_at is not None and since_recovery >= args.after_recovery:
            break
        if extra is not None:
            if extra == 0:
                break
            extra -= 1
        elif os.path.exists(args.stop_file):
            extra = args.extra_rounds
        if mark_at is None and os.path.exists(args.mark_file):
            mark_at = time.monotonic()
            removed = first
        rounds += 1
        t = time.monotonic()
        outcome = None
        try:
            s.send(f"ping {rounds}".encode())
            data = s.recv(2048)
            outcome = data.decode(errors="replace").strip()
        except socket.timeout:
            outcome = "timeout"
        except OSError as e:
            # the socket is unusable (destroyed: ECONNABORTED): a new one on the same port
            outcome = err_name(e)
            reopen_reasons[outcome] = reopen_reasons.get(outcome, 0) + 1
            reopens += 1
            s.close()
            try:
                s = open_socket()
            except OSError as e2:
                outcome += f", reopen failed: {err_name(e2)}"
        answered = outcome.startswith("pod")
        if answered and first is None:
            first = outcome
            with open(args.ready_file + ".tmp", "w") as f:
                f.write(outcome + "\n")
            os.replace(args.ready_file + ".tmp", args.ready_file)
        if mark_at is not None:
            if recovered_at is None and answered and outcome != removed:
                recovered_at = time.monotonic()
            elif recovered_at is not None:
                since_recovery += 1
                lost_after_recovery += 0 if answered else 1
        if len(log) < 400 and (not log or log[-1][1] != outcome):
            log.append((round(t - start, 3), outcome))
        time.sleep(max(0.0, args.interval - (time.monotonic() - t)))
    s.close()

    problems = []
    if first is None:
        problems.append("never answered")
    if mark_at is None:
        problems.append("the mark file never appeared")
    elif recovered_at is None:
        problems.append(f"no answer from a backend other than {removed} after the mark")
    else:
        took = recovered_at - mark_at
        if took > args.recover_within:
            problems.append(f"recovered only {took:.2f}s after the mark "
                            f"(want <= {args.recover_within}s)")
        if lost_after_recovery:
            problems.append(f"{lost_after_recovery} queries unanswered after the recovery")
    res = {"rounds": rounds, "first": first, "removed": removed, "reopens": reopens,
           "reopen_reasons": reopen_reasons, "lost_after_recovery": lost_after_recovery,
           "recovered_after_s": None if recovered_at is None or mark_at is None
           else round(recovered_at - mark_at, 3),
           "changes": log}
    summary = (f"dnsloop {addr_text(dst)} from port {args.sport}: {rounds} queries, first "
               f"answer {first}, removed {removed}, reopened {reopens}x {reopen_reasons}, "
               f"recovered after {res['recovered_after_s']}s, "
               f"lost after recovery {lost_after_recovery}\n  changes: "
               + " ".join(f"{t}s:{o}" for t, o in log[:40]))
    return emit(summary, res, problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cgroup", help="cgroup v2 directory to move this process into first")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("reach")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--expect", default="")
    p.add_argument("--min-each", type=int, default=1)
    p.add_argument("--only", action="store_true")
    p.add_argument("--same", action="store_true")

    p = sub.add_parser("refused")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--udp-port", type=int, help="UDP port if not PORT")
    p.add_argument("--within", type=float, default=1.0)

    p = sub.add_parser("unserved")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=1.0)

    p = sub.add_parser("dnsloop")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=0.5)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--mark-file", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--extra-rounds", type=int, default=10)
    p.add_argument("--recover-within", type=float, default=5.0)
    p.add_argument("--after-recovery", type=int, default=20)
    p.add_argument("--max-duration", type=float, default=60.0)

    args = ap.parse_args()
    if args.cgroup:
        with open(os.path.join(args.cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    return {"reach": cmd_reach, "refused": cmd_refused, "unserved": cmd_unserved,
            "dnsloop": cmd_dnsloop}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
