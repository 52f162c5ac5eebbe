#!/usr/bin/python3
"""The totals of a fault test's load, from the podclient logs (their last JSON line), as the
"figures:" lines docs/reliability.md quotes: every attempt counted, failures next to it.

  load_figures.py LOGDIR LABEL [--conns LOG...] [--persist LOG...] [--streams LOG...]

LOG is a log name under LOGDIR without ".log". Failures to a backend are listed per backend.
"""
import argparse
import json
import os
import sys


def last_json(logdir, name):
    path = os.path.join(logdir, name + ".log")
    with open(path) as f:
        docs = [json.loads(line) for line in f if line.startswith("{")]
    if not docs:
        # the client was stopped (or died) before its summary: its attempts are not known
        sys.exit(f"figures: {name}: no summary line in {path}: the client did not finish")
    return docs[-1]


def per_backend(counts):
    return f" (to {dict(sorted(counts.items()))})" if counts else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logdir")
    ap.add_argument("label")
    ap.add_argument("--conns", nargs="*", default=[])
    ap.add_argument("--persist", nargs="*", default=[])
    ap.add_argument("--streams", nargs="*", default=[])
    a = ap.parse_args()
    if a.conns:
        n = failed = removed = 0
        for name in a.conns:
            d = last_json(a.logdir, name)
            n += d["count"]
            failed += d["errors"]
            removed += d.get("violated", 0)
        print(f"figures: {a.label}: new connections {n}, failed {failed}, "
              f"reached a removed backend {removed}")
    if a.persist:
        conns = requests = failed = 0
        to = {}
        for name in a.persist:
            for c in last_json(a.logdir, name)["conns"]:
                conns += 1
                requests += c["requests"]
                if c["failures"]:
                    failed += 1
                    to[c["backend"]] = to.get(c["backend"], 0) + 1
        print(f"figures: {a.label}: keep-alive connections {conns}, requests {requests}, "
              f"failed connections {failed}{per_backend(to)}")
    if a.streams:
        streams = lines = broken = gap = 0
        to = {}
        for name in a.streams:
            for s in last_json(a.logdir, name)["streams"]:
                streams += 1
                lines += s["lines"]
                if s["error"]:
                    broken += 1
                    to[s["backend"]] = to.get(s["backend"], 0) + 1
                else:
                    gap = max(gap, s["worst_gap_ms"])
        print(f"figures: {a.label}: long-lived streams {streams}, lines {lines}, broken "
              f"{broken}{per_backend(to)}, longest gap of the unbroken {gap} ms")


if __name__ == "__main__":
    main()
