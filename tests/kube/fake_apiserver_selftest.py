#!/usr/bin/env python3
"""Self-test for fake_apiserver.py (stdlib only + the openssl CLI for throwaway certificates).

Starts the server on Unix sockets in a temporary directory (never TCP) and checks the API and
control protocol: auth (token rotation, mTLS, wrong CA), paging consistency under concurrent
writes, expired continue tokens, list/watch at old RVs, watch from RV, bookmarks, 410 paths,
chunk split modes (reassembled and parsed), selectors incl. ADDED/DELETED on selector
transitions, drop_watches, error_410_on_watches, fail_next with Retry-After, down (gone and
back, store intact), /wait, preload +
--compact-keep.  Exit 0 on success; on failure prints the failing check and exits 1.
Every wait is bounded; servers are killed in finally blocks.
"""

import base64
import http.client
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fake_apiserver.py")
GEN = os.path.join(HERE, "gen_cluster.py")
T0 = time.monotonic()


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ----------------------------------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------------------------------


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path, ssl_ctx=None, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path, self.ssl_ctx = path, ssl_ctx

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        if self.ssl_ctx is not None:
            s = self.ssl_ctx.wrap_socket(s, server_hostname="localhost")
        self.sock = s


class Server:
    def __init__(self, tmp, name, extra=(), token=None):
        self.api = os.path.join(tmp, f"{name}-api.sock")
        self.ctl = os.path.join(tmp, f"{name}-ctl.sock")
        self.ssl_ctx = None
        self.token = token
        cmd = [sys.executable, SERVER, "--unix", self.api, "--control", self.ctl, *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        r, _, _ = select.select([self.proc.stdout], [], [], 30)
        check(r, f"server {name} did not print ready within 30 s")
        line = self.proc.stdout.readline()
        check(line == "ready\n", f"server {name} printed {line!r} instead of 'ready' "
                                 f"(stderr: {self.proc.stderr.read() if self.proc.poll() is not None else ''})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # control
    def control(self, method, path, body=None, timeout=15):
        c = UnixConn(self.ctl, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Content-Type": "application/json"} if data is not None else {}
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def put(self, resource, obj):
        st, b = self.control("POST", "/objects", {"resource": resource, "object": obj})
        check(st == 200, f"POST /objects -> {st} {b}")
        return int(b["resourceVersion"])

    def delete(self, resource, ns, name):
        st, b = self.control("POST", "/delete", {"resource": resource, "namespace": ns, "name": name})
        check(st == 200, f"POST /delete -> {st} {b}")
        return int(b["resourceVersion"])

    def faults(self, **kw):
        st, b = self.control("POST", "/faults", kw)
        check(st == 200 and b == {"ok": True}, f"POST /faults -> {st} {b}")

    def wait_watches(self, want, timeout_ms=5000):
        st, b = self.control("POST", "/wait", {"open_watches": want, "timeout_ms": timeout_ms})
        check(st == 200, f"/wait {want} -> {st} {b}")
        return b

    # API
    def get(self, path, query=None, token="default", ctx="default", headers=None):
        if query:
            path = path + "?" + urllib.parse.urlencode(query)
        c = UnixConn(self.api, self.ssl_ctx if ctx == "default" else ctx)
        try:
            h = dict(headers or {})
            tok = self.token if token == "default" else token
            if tok:
                h["Authorization"] = f"Bearer {tok}"
            c.request("GET", path, headers=h)
            r = c.getresponse()
            body = r.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode(errors="replace")
            return r.status, parsed, r
        finally:
            c.close()

    def watch(self, path, query, **kw):
        return RawWatch(self, path, query, **kw)


class RawWatch:
    """A watch over a raw socket, decoding chunked encoding by hand to see chunk boundaries."""

    def __init__(self, srv, path, query, token="default", ctx="default"):
        q = dict(query)
        q.setdefault("watch", "1")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(srv.api)
        ctx = srv.ssl_ctx if ctx == "default" else ctx
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.sock = s
        tok = srv.token if token == "default" else token
        req = f"GET {path}?{urllib.parse.urlencode(q)} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
        if tok:
            req += f"Authorization: Bearer {tok}\r\n"
        s.sendall((req + "\r\n").encode())
        self.buf = b""
        self.eof = False  # connection closed
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.chunks = []  # payloads
        self.data = b""  # de-chunked stream
        self.ended = False  # saw terminating 0-chunk
        self.eof = False  # connection closed
        self.lines_taken = 0

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_until(self, sep, timeout=10):
        deadline = time.monotonic() + timeout
        while sep not in self.buf:
            left = deadline - time.monotonic()
            check(left > 0 and not self.eof, f"timeout/EOF waiting for {sep!r}")
            self._fill(left)
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _parse_chunks(self):
        while not self.ended:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            size = int(self.buf[:i], 16)
            if len(self.buf) < i + 2 + size + 2:
                return
            payload = self.buf[i + 2:i + 2 + size]
            check(self.buf[i + 2 + size:i + 4 + size] == b"\r\n", "chunk not followed by CRLF")
            self.buf = self.buf[i + 4 + size:]
            if size == 0:
                self.ended = True
                return
            self.chunks.append(payload)
            self.data += payload

    def events(self, n, timeout=5):
        """Wait for n more complete event lines; returns them parsed."""
        deadline = time.monotonic() + timeout
        while True:
            self._parse_chunks()
            lines = self.data.split(b"\n")[:-1]
            if len(lines) - self.lines_taken >= n:
                out = [json.loads(l) for l in lines[self.lines_taken:self.lines_taken + n]]
                self.lines_taken += n
                return out
            left = deadline - time.monotonic()
            check(left > 0 and not self.eof and not self.ended,
                  f"wanted {n} more events, have {len(lines) - self.lines_taken} "
                  f"(eof={self.eof} ended={self.ended}): {self.data[-300:]!r}")
            self._fill(min(left, 0.5))

    def until_end(self, timeout=5):
        """Read until the terminating chunk or EOF; returns remaining events."""
        deadline = time.monotonic() + timeout
        while not self.ended and not self.eof:
            check(time.monotonic() < deadline, "stream did not end in time")
            self._parse_chunks()
            if not self.ended:
                self._fill(0.2)
        self._parse_chunks()
        lines = self.data.split(b"\n")[:-1]
        out = [json.loads(l) for l in lines[self.lines_taken:]]
        self.lines_taken = len(lines)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------
# Objects
# ----------------------------------------------------------------------------------------------


def svc(name, ns="default", labels=None, ip="10.96.0.10"):
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": name}},
            "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                     "selector": {"app": name}, "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def eps(name, service, ns="default", extra_labels=None, n=2):
    labels = {"kubernetes.io/service-name": service,
              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    labels.update(extra_labels or {})
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.1.{i + 1}"],
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": "node-0"} for i in range(n)],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


# ----------------------------------------------------------------------------------------------
# Tests on a plain server
# ----------------------------------------------------------------------------------------------


def t_basics(s):
    st, b, _ = s.get("/version")
    check(st == 200 and b["major"] == "1", f"/version {st} {b}")
    for p in ("/healthz", "/readyz", "/livez"):
        st, b, _ = s.get(p)
        check(st == 200 and b == "ok", f"{p} {st} {b}")
    st, b, _ = s.get("/api/v1/namespaces/default/services/nope")
    check(st == 404 and b["kind"] == "Status" and b["reason"] == "NotFound"
          and b["message"] == 'services "nope" not found' and b["code"] == 404, f"404 single: {b}")
    st, b, _ = s.get("/apis/discovery.k8s.io/v1/namespaces/x/endpointslices/y")
    check(st == 404 and b["message"] == 'endpointslices.discovery.k8s.io "y" not found', f"404 eps: {b}")
    st, b, _ = s.get("/api/v1/frobs")
    check(st == 404 and b["reason"] == "NotFound", f"unknown resource {st}")
    rv1 = s.put("services", svc("b-web", "default"))
    rv2 = s.put("services", svc("a-web", "zz"))
    rv3 = s.put("nodes", {"metadata": {"name": "node-0", "labels": {"x": "y"}}, "spec": {}})
    check(rv1 < rv2 < rv3, "RVs not increasing")
    st, b, _ = s.get("/api/v1/services")
    check(st == 200 and b["kind"] == "ServiceList" and b["apiVersion"] == "v1", f"list: {b}")
    check(b["metadata"]["resourceVersion"] == str(rv3), "list RV is not the global RV")
    check("continue" not in b["metadata"] or not b["metadata"]["continue"], "continue on full list")
    names = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in b["items"]]
    check(names == sorted(names), f"items not sorted: {names}")
    for it in b["items"]:
        check("kind" not in it and "apiVersion" not in it, "list items must not carry kind")
        md = it["metadata"]
        check(md.get("uid") and md.get("creationTimestamp") and md.get("resourceVersion"), f"metadata: {md}")
    st, b, _ = s.get("/api/v1/namespaces/default/services/b-web")
    check(st == 200 and b["kind"] == "Service" and b["apiVersion"] == "v1"
          and b["metadata"]["resourceVersion"] == str(rv1), f"get one: {b}")
    check(list(b.keys())[:3] == ["kind", "apiVersion", "metadata"], "kind/apiVersion/metadata order")
    st, b, _ = s.get("/api/v1/namespaces/zz/services")
    check([i["metadata"]["name"] for i in b["items"]] == ["a-web"], "namespaced list")
    st, b, _ = s.get("/api/v1/nodes", {"fieldSelector": "metadata.name=node-0"})
    check(len(b["items"]) == 1 and "namespace" not in b["items"][0]["metadata"], f"node list {b}")
    st, b, _ = s.get("/api/v1/nodes/node-0")
    check(st == 200 and b["kind"] == "Node", "get node")
    # replace keeps uid/creationTimestamp
    uid = b["metadata"]["uid"]
    s.put("nodes", {"metadata": {"name": "node-0"}, "spec": {"podCIDR": "10.244.0.0/24"}})
    st, b, _ = s.get("/api/v1/nodes/node-0")
    check(b["metadata"]["uid"] == uid and b["spec"]["podCIDR"] == "10.244.0.0/24", "replace")
    st, _ = s.control("POST", "/delete", {"resource": "services", "namespace": "x", "name": "none"})
    check(st == 404, "delete missing -> 404")
    st, b = s.control("GET", "/state")
    check(b["objects"]["services"] == 2 and b["objects"]["nodes"] == 1, f"/state {b}")


def t_paging(s):
    for i in range(60):
        s.put("services", svc(f"p{i:03d}", "paging"))
    st, b, _ = s.get("/api/v1/namespaces/paging/services")
    expect = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in b["items"]}
    check(len(expect) == 60, "60 services")
    st, p1, _ = s.get("/api/v1/namespaces/paging/services", {"limit": "7"})
    snap_rv = p1["metadata"]["resourceVersion"]
    check(len(p1["items"]) == 7 and p1["metadata"].get("continue"), "page 1")
    check(p1["metadata"].get("remainingItemCount") == 53, f"remainingItemCount {p1['metadata']}")
    tok = json.loads(base64.urlsafe_b64decode(p1["metadata"]["continue"] + "=="))
    check(tok["rv"] == int(snap_rv) and tok["start"].endswith("\u0000"), f"token {tok}")
    # concurrent writer: modifies, deletes, creates while we page
    stop = threading.Event()

    writes = []

    def writer():
        k = 0
        while not stop.is_set() and k < 200:
            s.put("services", svc(f"p{k % 60:03d}", "paging", labels={"app": "x", "gen": str(k)}))
            if k % 7 == 0:
                s.control("POST", "/delete", {"resource": "services", "namespace": "paging",
                                              "name": f"p{(k * 3) % 60:03d}"})
            s.put("services", svc(f"new{k:03d}", "paging"))
            writes.append(k)
            k += 1

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    got = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in p1["items"]}
    cont = p1["metadata"]["continue"]
    pages = 1
    try:
        while cont:
            time.sleep(0.01)
            st, pg, _ = s.get("/api/v1/namespaces/paging/services", {"limit": "7", "continue": cont})
            check(st == 200, f"page {pages}: {st} {pg}")
            check(pg["metadata"]["resourceVersion"] == snap_rv, "page RV differs from first page RV")
            for it in pg["items"]:
                check(it["metadata"]["name"] not in got, "duplicate item across pages")
                got[it["metadata"]["name"]] = it["metadata"]["resourceVersion"]
            cont = pg["metadata"].get("continue", "")
            pages += 1
            if pages == 2:  # make sure writes really interleave with the pages
                deadline = time.monotonic() + 5
                while len(writes) < 5 and time.monotonic() < deadline:
                    time.sleep(0.01)
    finally:
        stop.set()
        th.join(10)
    check(len(writes) >= 5, "the concurrent writer did not run")
    check(got == expect, "paged list is not the snapshot at the first page's RV")
    check(pages == 9, f"expected 9 pages, got {pages}")
    # max_page fault caps page size
    s.faults(max_page=5)
    st, b, _ = s.get("/api/v1/namespaces/paging/services", {"limit": "500"})
    check(len(b["items"]) == 5 and b["metadata"].get("continue"), "max_page")
    st, b, _ = s.get("/api/v1/namespaces/paging/services")
    check(len(b["items"]) == 5, "max_page without limit")
    s.faults(max_page=0)
    # continue with a specific RV -> 400
    st, b, _ = s.get("/api/v1/namespaces/paging/services", {"continue": p1["metadata"]["continue"],
                                                            "resourceVersion": snap_rv})
    check(st == 400 and b["reason"] == "BadRequest", "continue+RV -> 400")
    # Exact list at an old RV returns the old snapshot
    st, b, _ = s.get("/api/v1/namespaces/paging/services", {"resourceVersion": snap_rv,
                                                            "resourceVersionMatch": "Exact"})
    check(st == 200 and {i["metadata"]["name"] for i in b["items"]} == set(expect), "Exact old RV")
    # paging with a label selector fills pages, no remainingItemCount
    st, b, _ = s.get("/api/v1/namespaces/paging/services", {"limit": "3", "labelSelector": "app=x"})
    check(len(b["items"]) == 3 and "remainingItemCount" not in b["metadata"], f"selector page {b['metadata']}")


def t_compaction(s):
    s.put("services", svc("c1", "compact"))
    s.put("services", svc("c2", "compact"))
    st, p1, _ = s.get("/api/v1/namespaces/compact/services", {"limit": "1"})
    old_rv = p1["metadata"]["resourceVersion"]
    s.faults(compact=True)
    st, b, r = s.get("/api/v1/namespaces/compact/services", {"limit": "1", "continue": p1["metadata"]["continue"]})
    check(st == 410 and b["reason"] == "Expired" and b["code"] == 410, f"expired continue {st} {b}")
    check(b["message"].startswith("The provided continue parameter is too old to display a consistent "
                                  "list result. You can start a new list without the continue parameter"),
          f"message {b['message']}")
    newtok = b["metadata"].get("continue")
    check(newtok, "410 on continue should carry an inconsistent continue token")
    st, b, _ = s.get("/api/v1/namespaces/compact/services", {"limit": "1", "continue": newtok})
    check(st == 200 and [i["metadata"]["name"] for i in b["items"]] == ["c2"], "inconsistent continue")
    st, b, _ = s.get("/api/v1/namespaces/compact/services", {"resourceVersion": old_rv,
                                                             "resourceVersionMatch": "Exact"})
    check(st == 410 and b["reason"] == "Expired"
          and b["message"] == "The resourceVersion for the provided list is too old.", f"old list {b}")
    w = s.watch("/api/v1/services", {"resourceVersion": old_rv})
    check(w.status == 200, "watch from compacted RV: HTTP status must be 200")
    ev = w.until_end()
    check(len(ev) == 1 and ev[0]["type"] == "ERROR", f"expected one ERROR event: {ev}")
    o = ev[0]["object"]
    check(o["kind"] == "Status" and o["code"] == 410 and o["reason"] == "Expired"
          and o["message"].startswith(f"too old resource version: {old_rv} ("), f"ERROR obj {o}")
    check(w.ended, "ERROR stream must end with the terminating chunk")
    w.close()
    st, b = s.control("GET", "/state")
    cur = b["resourceVersion"]
    st, b, _ = s.get("/api/v1/services", {"resourceVersion": cur, "resourceVersionMatch": "Exact"})
    check(st == 200, "list at the compaction RV is fine")


def t_watch_from_rv(s):
    rv0 = s.put("services", svc("w1", "watch"))
    rv1 = s.put("services", svc("w1", "watch", labels={"v": "1"}))
    rv2 = s.put("services", svc("w1", "watch", labels={"v": "2"}))
    rv3 = s.delete("services", "watch", "w1")
    w = s.watch("/api/v1/namespaces/watch/services", {"resourceVersion": str(rv0)})
    check(w.status == 200 and w.headers.get("transfer-encoding") == "chunked"
          and w.headers.get("content-type") == "application/json", f"watch headers {w.headers}")
    ev = w.events(3)
    check([e["type"] for e in ev] == ["MODIFIED", "MODIFIED", "DELETED"], f"types {ev}")
    check([e["object"]["metadata"]["resourceVersion"] for e in ev] == [str(rv1), str(rv2), str(rv3)], "RVs")
    check(ev[2]["object"]["metadata"]["labels"] == {"v": "2"}, "DELETED carries the last state")
    check(all(e["object"]["kind"] == "Service" and e["object"]["apiVersion"] == "v1" for e in ev), "kind")
    # live events
    rv4 = s.put("services", svc("w2", "watch"))
    s.put("services", svc("other", "elsewhere"))  # other namespace: not seen
    rv5 = s.put("services", svc("w2", "watch", labels={"z": "1"}))
    ev = w.events(2)
    check([(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in ev]
          == [("ADDED", str(rv4)), ("MODIFIED", str(rv5))], f"live {ev}")
    w.close()
    # RV unset -> synthetic ADDED for current state
    w = s.watch("/api/v1/namespaces/watch/services", {})
    ev = w.events(1)
    check(ev[0]["type"] == "ADDED" and ev[0]["object"]["metadata"]["name"] == "w2", f"initial {ev}")
    w.close()
    # watch-list: initial events end with an annotated bookmark
    w = s.watch("/api/v1/namespaces/watch/services", {"sendInitialEvents": "true", "allowWatchBookmarks": "true",
                                                       "resourceVersionMatch": "NotOlderThan", "resourceVersion": ""})
    ev = w.events(2)
    check(ev[0]["type"] == "ADDED" and ev[1]["type"] == "BOOKMARK"
          and ev[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}, f"{ev}")
    w.close()


def t_bookmarks(s):
    s.faults(bookmark_interval_ms=200)
    t = time.monotonic()
    w = s.watch("/apis/discovery.k8s.io/v1/endpointslices", {"allowWatchBookmarks": "true",
                                                             "timeoutSeconds": "1", "resourceVersion": "0"})
    ev = [e for e in w.until_end(5) if e["type"] == "BOOKMARK"]
    dt = time.monotonic() - t
    check(w.ended, "timeoutSeconds must end with a terminating chunk")
    check(0.9 <= dt < 3, f"timeoutSeconds=1 took {dt:.2f}s")
    check(len(ev) >= 3, f"expected >=3 bookmarks in 1 s at 200 ms, got {len(ev)}")
    o = ev[-1]["object"]
    st, b = s.control("GET", "/state")
    check(o["kind"] == "EndpointSlice" and o["apiVersion"] == "discovery.k8s.io/v1"
          and o["metadata"]["resourceVersion"] == b["resourceVersion"] and o["endpoints"] is None, f"bookmark {o}")
    w.close()
    s.faults(bookmark_interval_ms=1000)


def t_selectors(s):
    sel = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"
    w = s.watch("/apis/discovery.k8s.io/v1/endpointslices", {"labelSelector": sel, "resourceVersion": "0"})
    s.wait_watches({"endpointslices": 1})
    rv_a = s.put("endpointslices", eps("web-abc", "web", "sel"))
    s.put("endpointslices", eps("hl-abc", "hl", "sel", {"service.kubernetes.io/headless": ""}))
    rv_b = s.put("endpointslices", eps("web-abc", "web", "sel", {"service.kubernetes.io/service-proxy-name": "x"}))
    rv_c = s.put("endpointslices", eps("web-abc", "web", "sel", n=3))
    rv_d = s.put("endpointslices", eps("web-abc", "web", "sel", n=4))
    ev = w.events(4)
    got = [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in ev]
    check(got == [("ADDED", str(rv_a)), ("DELETED", str(rv_b)), ("ADDED", str(rv_c)), ("MODIFIED", str(rv_d))],
          f"selector transitions: {got}")
    check(len(ev[1]["object"]["endpoints"]) == 2 and "service.kubernetes.io/service-proxy-name"
          not in ev[1]["object"]["metadata"]["labels"], "DELETED on transition carries previous content")
    check(ev[0]["object"]["metadata"]["generation"] == 1 and ev[3]["object"]["metadata"]["generation"] == 4,
          "endpointslice generation")
    w.close()
    st, b, _ = s.get("/apis/discovery.k8s.io/v1/namespaces/sel/endpointslices", {"labelSelector": sel})
    check([i["metadata"]["name"] for i in b["items"]] == ["web-abc"], "list with !key selector")
    for q, want in [("kubernetes.io/service-name=hl", ["hl-abc"]), ("kubernetes.io/service-name==web", ["web-abc"]),
                    ("kubernetes.io/service-name!=web", ["hl-abc"]), ("service.kubernetes.io/headless", ["hl-abc"]),
                    ("kubernetes.io/service-name in (web,zz)", ["web-abc"]),
                    ("kubernetes.io/service-name notin (web)", ["hl-abc"])]:
        st, b, _ = s.get("/apis/discovery.k8s.io/v1/namespaces/sel/endpointslices", {"labelSelector": q})
        check(st == 200 and [i["metadata"]["name"] for i in b["items"]] == want, f"selector {q}: {b}")
    st, b, _ = s.get("/apis/discovery.k8s.io/v1/endpointslices", {"fieldSelector": "metadata.namespace=sel,metadata.name=hl-abc"})
    check([i["metadata"]["name"] for i in b["items"]] == ["hl-abc"], "field selector")
    st, b, _ = s.get("/apis/discovery.k8s.io/v1/endpointslices", {"fieldSelector": "spec.nodeName=x"})
    check(st == 400 and b["reason"] == "BadRequest", "unsupported field -> 400")
    s.put("pods", {"metadata": {"name": "p1", "namespace": "sel"}, "spec": {"nodeName": "node-a"}, "status": {}})
    s.put("pods", {"metadata": {"name": "p2", "namespace": "sel"}, "spec": {"nodeName": "node-b"}, "status": {}})
    st, b, _ = s.get("/api/v1/pods", {"fieldSelector": "spec.nodeName=node-b"})
    check([i["metadata"]["name"] for i in b["items"]] == ["p2"], "pods spec.nodeName")
    # field-selector transitions on watch (node by name)
    w = s.watch("/api/v1/nodes", {"fieldSelector": "metadata.name=node-sel"})
    s.wait_watches({"nodes": 1})
    s.put("nodes", {"metadata": {"name": "node-other"}})
    s.put("nodes", {"metadata": {"name": "node-sel"}})
    ev = w.events(1)
    check(ev[0]["type"] == "ADDED" and ev[0]["object"]["metadata"]["name"] == "node-sel", f"node watch {ev}")
    w.close()
    s.put("endpoints", {"metadata": {"name": "web", "namespace": "sel"}, "subsets": []})
    st, b, _ = s.get("/api/v1/namespaces/sel/endpoints/web")
    check(st == 200 and b["kind"] == "Endpoints", "endpoints resource")


def t_split_modes(s):
    ns = "split"
    for i in range(12):
        s.put("services", svc(f"s{i:02d}", ns))
    big = svc("big", ns)
    big["metadata"]["annotations"] = {"note": "x" * 400_000}
    s.put("services", big)
    for mode in ("none", "midline", "bytewise", "random"):
        s.faults(split=mode, large_every=5, large_bytes=200_000)
        w = s.watch(f"/api/v1/namespaces/{ns}/services", {"resourceVersion": "0"})
        ev = w.events(13, timeout=15)
        names = sorted(e["object"]["metadata"]["name"] for e in ev)
        check(names == sorted(["big"] + [f"s{i:02d}" for i in range(12)]), f"{mode}: names {names}")
        rv = s.put("services", svc("s00", ns, labels={"mode": mode}))
        ev = w.events(1)
        check(ev[0]["type"] == "MODIFIED" and ev[0]["object"]["metadata"]["resourceVersion"] == str(rv), mode)
        sizes = [len(c) for c in w.chunks]
        lines = w.data.split(b"\n")[:-1]
        check(max(len(l) for l in lines) > 300_000, f"{mode}: no large line")
        if mode == "none":
            check(all(c.endswith(b"\n") and c.count(b"\n") == 1 for c in w.chunks), "none: one chunk per line")
        elif mode == "midline":
            check(len(w.chunks) == 2 * len(lines) and not any(c.endswith(b"\n") for c in w.chunks[0::2]),
                  f"midline: {len(w.chunks)} chunks for {len(lines)} lines")
        elif mode == "bytewise":
            check(sizes.count(1) > 1000, "bytewise: not enough 1-byte chunks")
        else:
            check(any(b"\n" in c[:-1] for c in w.chunks), "random: no chunk spanning a line end")
            check(any(not c.endswith(b"\n") for c in w.chunks), "random: no mid-line boundary")
        allev = [json.loads(l) for l in lines]
        padded = [e for e in allev if any(m.get("manager") == "sluice-fake-padding"
                                          for m in e["object"]["metadata"].get("managedFields") or [])]
        check(len(padded) == len(allev) // 5, f"{mode}: {len(padded)} padded events of {len(allev)}")
        w.close()
    s.faults(split="none", large_every=0)


def t_faults(s):
    # drop_watches
    w1 = s.watch("/api/v1/services", {"resourceVersion": "0"})
    w2 = s.watch("/apis/discovery.k8s.io/v1/endpointslices", {"resourceVersion": "0"})
    s.wait_watches({"services": 1, "endpointslices": 1})
    s.faults(drop_watches=True)
    w1.until_end()
    w2.until_end()
    check(w1.eof and not w1.ended and w2.eof and not w2.ended, "drop_watches must close without terminator")
    s.wait_watches({})
    st, b = s.control("POST", "/wait", {"open_watches": {"services": 1}, "timeout_ms": 300})
    check(st == 408, f"/wait should time out with 408, got {st}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st, b = s.control("GET", "/state")
        if b["open_watches"]["services"] == 0:
            break
        time.sleep(0.05)
    check(b["open_watches"]["services"] == 0, f"open_watches after drop: {b}")
    # error_410_on_watches
    w = s.watch("/api/v1/services", {"resourceVersion": "0", "allowWatchBookmarks": "true"})
    s.wait_watches({"services": 1})
    s.faults(error_410_on_watches=True)
    ev = [e for e in w.until_end() if e["type"] != "ADDED"]
    check(ev and ev[-1]["type"] == "ERROR" and ev[-1]["object"]["code"] == 410
          and ev[-1]["object"]["reason"] == "Expired" and w.ended, f"410 on watches: {ev[-1:]}")
    w.close()
    # client disconnect is noticed
    w = s.watch("/api/v1/nodes", {})
    s.wait_watches({"nodes": 1})
    w.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st, b = s.control("GET", "/state")
        if b["open_watches"]["nodes"] == 0:
            break
        time.sleep(0.05)
    check(b["open_watches"]["nodes"] == 0, "server did not notice the client leaving")
    # fail_next with Retry-After
    s.faults(fail_next={"count": 2, "status": 429, "retry_after": 3})
    for _ in range(2):
        st, b, r = s.get("/api/v1/services")
        check(st == 429 and r.getheader("Retry-After") == "3" and b["reason"] == "TooManyRequests"
              and b["details"]["retryAfterSeconds"] == 3, f"429: {st} {b}")
    st, b, _ = s.get("/api/v1/services")
    check(st == 200, "third request succeeds")
    s.faults(fail_next={"count": 1, "status": 503, "retry_after": 1})
    w = s.watch("/api/v1/services", {})
    check(w.status == 503 and w.headers.get("retry-after") == "1", f"watch 503 {w.status} {w.headers}")
    w.close()
    s.faults(fail_next={"count": 1, "status": 500})
    st, b, _ = s.get("/api/v1/nodes")
    check(st == 500 and b["reason"] == "InternalError", "500")
    s.faults(fail_next={"count": 1, "status": 410})
    st, b, _ = s.get("/api/v1/nodes")
    check(st == 410 and b["reason"] == "Expired", "410")
    # request log
    st, log = s.control("GET", "/requests")
    check(isinstance(log, list) and log, "/requests")
    last = log[-1]
    check(set(last) == {"method", "path", "query", "authorization", "status", "client_cert_cn", "time"}, f"{last}")
    check(last["path"] == "/api/v1/nodes" and last["status"] == 410, f"last request {last}")
    wl = [e for e in log if e["query"].get("watch") == "1" and e["query"].get("allowWatchBookmarks") == "true"]
    check(wl and wl[-1]["status"] == 200, "watch requests logged with their params")
    st, _ = s.control("POST", "/reset_requests", {})
    st, log = s.control("GET", "/requests")
    check(log == [], "reset_requests")


def t_down(s):
    # The API server is gone: watches cut without terminator, new connections refused; the
    # store goes on (a change while down), and after "up" a watch from the last RV gets it.
    w = s.watch("/api/v1/services", {"resourceVersion": "0"})
    s.wait_watches({"services": 1})
    st, lst, _ = s.get("/api/v1/services")
    rv = lst["metadata"]["resourceVersion"]
    s.faults(down=True)
    w.until_end()
    check(w.eof and not w.ended, "down must cut watches without terminator")
    try:
        s.get("/api/v1/services")
        check(False, "a request while down must be refused")
    except OSError:
        pass
    st, state = s.control("GET", "/state")
    check(st == 200 and state["api_up"] is False and state["open_watches"]["services"] == 0,
          f"state while down: {state}")
    new_rv = s.put("services", svc("while-down", ip="10.96.9.9"))
    check(new_rv > int(rv), "writes go on while down")
    s.faults(down=False)
    st, state = s.control("GET", "/state")
    check(state["api_up"] is True, f"state after up: {state}")
    w = s.watch("/api/v1/services", {"resourceVersion": rv})
    ev = w.events(1)
    check(ev[0]["type"] == "ADDED" and ev[0]["object"]["metadata"]["name"] == "while-down"
          and int(ev[0]["object"]["metadata"]["resourceVersion"]) == new_rv,
          f"the change made while down, from the old RV: {ev}")
    w.close()
    s.delete("services", "default", "while-down")


def t_compact_keep(tmp):
    pre = os.path.join(tmp, "pre.json")
    subprocess.run([sys.executable, GEN, "--services", "20", "--endpoints", "150", "--per-slice", "10",
                    "--dual-stack", "--managed-fields", "-o", pre], check=True, capture_output=True, timeout=30)
    with open(pre) as f:
        d = json.load(f)
    s = Server(tmp, "keep", ["--preload", pre, "--compact-keep", "5"])
    try:
        st, b = s.control("GET", "/state")
        check(b["objects"]["services"] == 20 and b["objects"]["endpointslices"] == len(d["endpointslices"])
              and b["objects"]["nodes"] == 1, f"preload counts {b}")
        st, lst, _ = s.get("/apis/discovery.k8s.io/v1/endpointslices", {"limit": "4"})
        check(lst["metadata"].get("remainingItemCount") == len(d["endpointslices"]) - 4, "remaining")
        first = lst["metadata"]["resourceVersion"]
        for i in range(6):
            s.put("services", svc(f"k{i}", "keep"))
        st, b, _ = s.get("/apis/discovery.k8s.io/v1/endpointslices", {"limit": "4", "continue": lst["metadata"]["continue"]})
        check(st == 410 and b["reason"] == "Expired", "compact-keep expires old continue tokens")
        w = s.watch("/api/v1/services", {"resourceVersion": first})
        ev = w.until_end()
        check(len(ev) == 1 and ev[0]["type"] == "ERROR" and ev[0]["object"]["code"] == 410, "compact-keep watch")
        w.close()
        st, b = s.control("GET", "/state")
        w = s.watch("/api/v1/services", {"resourceVersion": str(int(b["resourceVersion"]) - 3)})
        ev = w.events(3)
        check([e["type"] for e in ev] == ["ADDED"] * 3, "watch within kept history")
        w.close()
    finally:
        s.stop()


# ----------------------------------------------------------------------------------------------
# TLS + auth
# ----------------------------------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(d):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "1",
                "-subj", f"/CN={ca}", cwd=d)
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "cli.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, cn, ca, ext in (("srv", "kube-apiserver", "ca", "srv.ext"), ("cli", "system:kube-proxy", "ca", "cli.ext"),
                              ("rogue", "intruder", "rogue-ca", "cli.ext")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", ext, cwd=d)


def t_tls(tmp):
    pki = os.path.join(tmp, "pki")
    os.mkdir(pki)
    make_pki(pki)
    tokf = os.path.join(tmp, "token")
    with open(tokf, "w") as f:
        f.write("tok-one\n")
    p = lambda n: os.path.join(pki, n)  # noqa: E731
    s = Server(tmp, "tls", ["--tls-cert", p("srv.crt"), "--tls-key", p("srv.key"), "--client-ca", p("ca.crt"),
                            "--token-file", tokf, "--bookmark-interval-ms", "100"], token="tok-one")
    try:
        ctx = ssl.create_default_context(cafile=p("ca.crt"))
        s.ssl_ctx = ctx
        st, b, _ = s.get("/api/v1/services", token=None)
        check(st == 401 and b == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, f"no token {st} {b}")
        st, b, _ = s.get("/api/v1/services", token="wrong")
        check(st == 401, "wrong token")
        st, b, _ = s.get("/version", token=None)
        check(st == 200, "/version is public")
        st, b, _ = s.get("/version", token="wrong")
        check(st == 401, "/version with a wrong token")
        st, b, _ = s.get("/api/v1/services")
        check(st == 200, f"good token {st} {b}")
        w = s.watch("/api/v1/services", {}, token=None)
        check(w.status == 401, "watch without token")
        w.close()
        # rotation: the file is re-read on every request
        with open(tokf, "w") as f:
            f.write("tok-two\n")
        st, b, _ = s.get("/api/v1/services")
        check(st == 401, "old token after rotation")
        s.token = "tok-two"
        st, b, _ = s.get("/api/v1/services")
        check(st == 200, "new token after rotation")
        # mTLS
        cctx = ssl.create_default_context(cafile=p("ca.crt"))
        cctx.load_cert_chain(p("cli.crt"), p("cli.key"))
        s.control("POST", "/reset_requests", {})
        st, b, _ = s.get("/api/v1/services", token=None, ctx=cctx)
        check(st == 200, f"client cert {st} {b}")
        st, log = s.control("GET", "/requests")
        check(log[-1]["client_cert_cn"] == "system:kube-proxy" and log[-1]["authorization"] == "", f"{log[-1]}")
        rctx = ssl.create_default_context(cafile=p("ca.crt"))
        rctx.load_cert_chain(p("rogue.crt"), p("rogue.key"))
        try:
            st, b, _ = s.get("/api/v1/services", token=None, ctx=rctx)
            raise Fail(f"client cert from a foreign CA was accepted ({st})")
        except (ssl.SSLError, ConnectionError, OSError) as e:
            if isinstance(e, Fail):
                raise
        # watch over TLS with random splitting and bookmarks
        s.put("services", svc("tls-a"))
        s.faults(split="random")
        w = s.watch("/api/v1/services", {"allowWatchBookmarks": "true", "timeoutSeconds": "1"}, token=None, ctx=cctx)
        ev = w.until_end()
        check(ev[0]["type"] == "ADDED" and any(e["type"] == "BOOKMARK" for e in ev) and w.ended, f"TLS watch {ev}")
        w.close()
    finally:
        s.stop()
    check(s.proc.returncode == 0, f"SIGTERM exit code {s.proc.returncode}")
    check(not os.path.exists(s.api) and not os.path.exists(s.ctl), "socket files not removed")


def main():
    tmp = tempfile.mkdtemp(prefix="fake-apiserver-selftest-")
    s = None
    current = "startup"
    try:
        s = Server(tmp, "plain", ["--bookmark-interval-ms", "1000"])
        for t in (t_basics, t_paging, t_compaction, t_watch_from_rv, t_bookmarks, t_selectors,
                  t_split_modes, t_faults, t_down):
            current = t.__name__
            t0 = time.monotonic()
            t(s)
            print(f"ok   {current} ({time.monotonic() - t0:.2f}s)", flush=True)
        s.stop()
        for t in (t_compact_keep, t_tls):
            current = t.__name__
            t0 = time.monotonic()
            t(tmp)
            print(f"ok   {current} ({time.monotonic() - t0:.2f}s)", flush=True)
    except (Fail, AssertionError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
        print(f"FAIL {current}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if s is not None and s.proc.poll() is not None:
            print(f"server stderr: {s.proc.stderr.read()[-2000:]}", file=sys.stderr)
        return 1
    finally:
        if s is not None:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"fake_apiserver self-test passed in {time.monotonic() - T0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
