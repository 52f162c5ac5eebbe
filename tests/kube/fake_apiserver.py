#!/usr/bin/env python3
"""Protocol-faithful Kubernetes API server stand-in for sluice tests and benchmarks.

Python 3 standard library only.  It serves the list/watch subset of the Kubernetes API that a
kube-proxy replacement consumes (docs: /work/shared/reference/kube-semantics.md section 3) and
exposes a separate *control* socket through which tests create/delete objects and inject faults.

Usage:
  fake_apiserver.py [--unix PATH | --listen HOST:PORT] [--tls-cert F --tls-key F]
                    [--client-ca F] [--token-file F] --control PATH [--preload FILE.json]
                    [--bookmark-interval-ms N] [--compact-keep N]

Prints exactly one line "ready" on stdout once the API and control sockets listen.
SIGTERM/SIGINT exit cleanly (socket files are removed).

Faithful to kube-apiserver
--------------------------
* Paths: /api/v1/{services,endpoints,pods,nodes}, /apis/discovery.k8s.io/v1/endpointslices,
  namespaced variants /…/namespaces/{ns}/{resource}[/{name}], single-object GET (404 Status
  "services \"x\" not found"), legacy /api/v1/watch/… paths, /api, /apis, /version, /healthz,
  /livez, /readyz.
* One global resourceVersion (like the etcd revision), bumped on each write.  Objects get
  metadata.uid / creationTimestamp / resourceVersion; endpointslices get metadata.generation.
  metadata keys are emitted in Go struct order; kind/apiVersion come first.
* Lists: kind "<Kind>List", items without kind/apiVersion, sorted by etcd key (namespace/name),
  metadata.resourceVersion, limit/continue paging on a consistent snapshot of the first page's
  RV (object history is kept so older snapshots can be rebuilt), remainingItemCount (only when no
  selector is used, as etcd3 store does), continue tokens in the real format
  base64url({"v":"meta.k8s.io/v1","rv":N,"start":"ns/name\\u0000"}).  A token older than the
  compaction point -> 410 Expired with the real "inconsistent continue" message and a fresh
  metadata.continue token with rv=-1 (continuing at the latest RV), exactly like etcd3 store.
* resourceVersion on list: unset/"0" -> latest; N with resourceVersionMatch=Exact, or N with a
  limit and no match (legacy semantics) -> snapshot at N; N with NotOlderThan -> latest (waits up
  to 3 s if N is in the future, then 504 "Too large resource version").  N older than the
  compaction point -> 410 Expired "The resourceVersion for the provided list is too old.".
  RV != "0" together with continue -> 400.  Responses >= 128 KiB are gzip'ed when the client
  sends Accept-Encoding: gzip (APIResponseCompression).
* Watch (watch=1|true): 200, chunked, application/json, one JSON event per line, objects with
  kind/apiVersion.  RV unset/"0" -> synthetic ADDED for current objects then changes; RV N ->
  every change after N from history; N older than the compaction point -> a single ERROR event
  (Status 410 Expired "too old resource version: N (M)") then end of stream, as the watch cache
  does.  Selector transitions like the watch cache: MODIFIED into the selector -> ADDED, out of
  it -> DELETED carrying the previous object with the event's RV.  DELETED carries the last
  state with the deletion RV.  allowWatchBookmarks -> BOOKMARK with a zero-valued object of the
  watched kind (e.g. EndpointSlice has "endpoints":null) carrying only metadata.resourceVersion,
  every --bookmark-interval-ms and right before a timeoutSeconds close.  sendInitialEvents=true
  (watch-list) -> initial ADDED events then a BOOKMARK annotated k8s.io/initial-events-end.
* Label selectors: key, !key, key=v, key==v, key!=v, key in (a,b), key notin (a,b).  Field
  selectors: metadata.name, metadata.namespace (all), spec.nodeName/status.phase/status.podIP
  (pods), spec.clusterIP/spec.type (services), with =, ==, !=.  Unknown field -> 400.
* Auth: bearer token (token file re-read on every request; each non-empty line is a token, the
  first comma-separated field as in a static token CSV) and/or x509 client certificates (TLS with
  --client-ca, verify-if-given like Go's VerifyClientCertIfGiven).  401 body is the real
  Status {"message":"Unauthorized","reason":"Unauthorized","code":401}.
* 429 responses carry Retry-After and details.retryAfterSeconds like API Priority & Fairness.

Simplified / not faithful
-------------------------
* Only GET on the API (others -> 405 MethodNotAllowed Status).  Writes go through the control
  socket.  No admission, no validation beyond "metadata.name is present", no defaulting.
* Without auth configured everything is allowed.  With auth configured, anonymous requests to
  resource paths get 401 (the real server, with anonymous auth enabled, would answer 403);
  /version, /healthz, /livez, /readyz, /api, /apis are readable anonymously (as with the default
  system:public-info-viewer binding) but a *wrong* token still gets 401.
* JSON only (the Accept header is ignored; no protobuf).  HTTP/1.1 only (no HTTP/2).
* Without timeoutSeconds, a watch stays open until the client leaves or a fault closes it (the
  real server closes after --min-request-timeout * rand(1..2)).
* Watch from a future RV simply skips events up to that RV.
* The fault "compact" bumps the global RV once (as the real compactor's write to
  compact_rev_key does) and sets the compaction point to the new RV, so everything obtained
  before it (list RVs, continue tokens, watch RVs) is expired.

Control protocol (HTTP/1.1 over --control Unix socket, JSON in/out, no auth)
---------------------------------------------------------------------------
POST /objects   {"resource":R,"object":{...}} (or {"resource":R,"objects":[...]}) -> {"resourceVersion":"N"}
POST /delete    {"resource":R,"namespace":ns,"name":n} -> 200 {"resourceVersion":"N"} | 404
POST /faults    any of split, compact, error_410_on_watches, drop_watches, fail_next,
                bookmark_interval_ms, max_page, large_every, large_bytes, down -> {"ok":true}
GET  /requests  -> [{"method","path","query","authorization","status","client_cert_cn","time"}...]
GET  /state     -> {"resourceVersion","compactedResourceVersion","open_watches","objects","api_up"}
POST /wait      {"open_watches":{R:n},"timeout_ms":T} -> 200 | 408
POST /reset_requests -> {"ok":true}
See tests/kube/README.md for details.
"""

import argparse
import base64
import bisect
import datetime
import gc
import http.server
import itertools
import json
import os
import random
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

# ----------------------------------------------------------------------------------------------
# Resources
# ----------------------------------------------------------------------------------------------


def dumps(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


class Resource:
    def __init__(self, plural, kind, group, version, namespaced, bookmark_body, fields):
        self.plural = plural
        self.kind = kind
        self.group = group  # "" for the core group
        self.version = version
        self.api_version = f"{group}/{version}" if group else version
        self.namespaced = namespaced
        self.bookmark_body = bookmark_body  # zero-valued fields after metadata, as Go emits them
        self.fields = fields  # supported field-selector labels besides metadata.*
        # Pre-encoded JSON fragments: an object with kind/apiVersion is FULL_HEAD + b"," +
        # item[1:], a watch event line is EVENT_HEAD[type] + item[1:] + b"}\n".
        self.full_head = ('{"kind":%s,"apiVersion":%s' % (dumps(kind), dumps(self.api_version))).encode()
        self.event_head = {t: b'{"type":"%s","object":%s,' % (t.encode(), self.full_head)
                           for t in ("ADDED", "MODIFIED", "DELETED")}
        self.list_head = ('{"kind":%s,"apiVersion":%s,"metadata":' % (
            dumps(kind + "List"), dumps(self.api_version))).encode()

    @property
    def qualified(self):
        """'services' or 'endpointslices.discovery.k8s.io' (as in NotFound messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = {
    "services": Resource("services", "Service", "", "v1", True,
                         {"spec": {}, "status": {"loadBalancer": {}}},
                         {"spec.clusterIP", "spec.type"}),
    "endpointslices": Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True,
                               {"addressType": "", "endpoints": None, "ports": None}, set()),
    "nodes": Resource("nodes", "Node", "", "v1", False,
                      {"spec": {}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                                              "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "",
                                                           "kernelVersion": "", "osImage": "",
                                                           "containerRuntimeVersion": "",
                                                           "kubeletVersion": "", "kubeProxyVersion": "",
                                                           "operatingSystem": "", "architecture": ""}}},
                      set()),
    "pods": Resource("pods", "Pod", "", "v1", True,
                     {"spec": {"containers": None}, "status": {}},
                     {"spec.nodeName", "status.phase", "status.podIP", "spec.restartPolicy",
                      "spec.schedulerName", "spec.serviceAccountName", "status.nominatedNodeName"}),
    "endpoints": Resource("endpoints", "Endpoints", "", "v1", True, {}, set()),
}

METADATA_ORDER = ["name", "generateName", "namespace", "selfLink", "uid", "resourceVersion",
                  "generation", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
                  "finalizers", "managedFields"]

MSG_LIST_EXPIRED = "The resourceVersion for the provided list is too old."
MSG_CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list "
                        "result. You can start a new list without the continue parameter.")
MSG_INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list.")

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code, reason, message, details=None, list_meta=None):
    """A metav1.Status in the exact field order the apiserver emits."""
    s = {"kind": "Status", "apiVersion": "v1", "metadata": list_meta or {}, "status": "Failure",
         "message": message, "reason": reason}
    if details is not None:
        s["details"] = details
    s["code"] = code
    return s


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, list_meta=None, headers=None):
        super().__init__(message)
        self.code = code
        self.status = status_obj(code, reason, message, details, list_meta)
        self.headers = headers or {}


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


# ----------------------------------------------------------------------------------------------
# Selectors
# ----------------------------------------------------------------------------------------------


def _split_top(s):
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_label_selector(s):
    """Returns a list of predicates over a labels dict.  Raises ApiError 400 on syntax errors."""
    reqs = []
    if not s or not s.strip():
        return reqs
    for term in _split_top(s):
        t = term.strip()
        if not t:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier")
        low = f" {t} "
        if t.startswith("!"):
            key = t[1:].strip()
            _check_key(key)
            reqs.append(_Absent(key))
        elif " notin " in low or " in " in low:
            neg = " notin " in low
            op = " notin " if neg else " in "
            key, rest = t.split(op.strip(), 1)
            key, rest = key.strip(), rest.strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise bad_request(f"unable to parse requirement: found '{rest}', expected: '('")
            vals = {v.strip() for v in rest[1:-1].split(",") if v.strip()}
            _check_key(key)
            if neg:
                reqs.append(lambda L, k=key, vs=vals: L.get(k) not in vs)
            else:
                reqs.append(lambda L, k=key, vs=vals: k in L and L[k] in vs)
        elif "!=" in t:
            key, val = (x.strip() for x in t.split("!=", 1))
            _check_key(key)
            reqs.append(lambda L, k=key, v=val: L.get(k) != v)
        elif "==" in t or "=" in t:
            key, val = (x.strip() for x in t.split("==" if "==" in t else "=", 1))
            _check_key(key)
            reqs.append(lambda L, k=key, v=val: k in L and L[k] == v)
        elif any(c in t for c in "<>()! "):
            raise bad_request(f"unable to parse requirement: invalid label selector term '{t}'")
        else:
            _check_key(t)
            reqs.append(lambda L, k=t: k in L)
    return reqs


class _Absent:
    """The requirement "!key" (kept recognisable so a list can test all of them at once)."""
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __call__(self, labels):
        return self.key not in labels


def _check_key(key):
    if not key or any(c in key for c in " =!(),"):
        raise bad_request(f"unable to parse requirement: invalid label key \"{key}\"")


def _field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    return "" if cur is None else str(cur)


def parse_field_selector(s, res):
    reqs = []
    if not s or not s.strip():
        return reqs
    for term in s.split(","):
        t = term.strip()
        if not t:
            continue
        if "!=" in t:
            key, val, neg = *t.split("!=", 1), True
        elif "==" in t:
            key, val, neg = *t.split("==", 1), False
        elif "=" in t:
            key, val, neg = *t.split("=", 1), False
        else:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{t}'")
        key, val = key.strip(), val.strip()
        if key not in ("metadata.name", "metadata.namespace") and key not in res.fields:
            raise bad_request(f"field label not supported: {key}")
        if neg:
            reqs.append(lambda o, k=key, v=val: _field_value(o, k) != v)
        else:
            reqs.append(lambda o, k=key, v=val: _field_value(o, k) == v)
    return reqs


class Selector:
    def __init__(self, label_reqs, field_reqs, namespace=None):
        self.label_reqs = label_reqs
        self.field_reqs = field_reqs
        self.namespace = namespace

    @property
    def empty(self):
        return not self.label_reqs and not self.field_reqs

    def matches(self, obj):
        md = obj.get("metadata") or {}
        if self.namespace is not None and md.get("namespace", "") != self.namespace:
            return False
        labels = md.get("labels") or {}
        for r in self.label_reqs:
            if not r(labels):
                return False
        for r in self.field_reqs:
            if not r(obj):
                return False
        return True

    def version_predicate(self):
        """None if every version matches, else a function Version -> bool equivalent to
        matches(ver.obj), specialised so that a list page costs one cheap call per item."""
        if self.empty and self.namespace is None:
            return None
        if self.field_reqs or self.namespace is not None:
            m = self.matches
            return lambda v: m(v.obj)
        absent = frozenset(r.key for r in self.label_reqs if isinstance(r, _Absent))
        rest = tuple(r for r in self.label_reqs if not isinstance(r, _Absent))
        if not rest:
            return lambda v: absent.isdisjoint(v.labels)
        if not absent and len(rest) == 1:
            r0 = rest[0]
            return lambda v: r0(v.labels)

        def pred(v):
            L = v.labels
            if absent and not absent.isdisjoint(L):
                return False
            for r in rest:
                if not r(L):
                    return False
            return True
        return pred


# ----------------------------------------------------------------------------------------------
# Store with history
# ----------------------------------------------------------------------------------------------


class Version:
    """One stored state of one object (obj has no kind/apiVersion, never mutated).

    item is its JSON as UTF-8 bytes, encoded once when the version is created: lists and watch
    events splice these bytes without re-serializing or re-encoding anything.  labels and key
    (etcd key "ns/name") are kept for cheap selector matching and paging."""
    __slots__ = ("res", "obj", "rv", "item", "labels", "key")

    def __init__(self, res, obj, rv):
        self.res, self.obj, self.rv = res, obj, rv
        md = obj.get("metadata") or {}
        self.labels = md.get("labels") or {}
        self.key = Store.key_of(res, md.get("namespace", ""), md.get("name", ""))
        self.item = dumps(obj).encode()

    def item_json(self):
        return self.item

    def full_json(self):
        """bytes: the object with kind/apiVersion first."""
        item = self.item
        if item == b"{}":
            return self.res.full_head + b"}"
        return b"".join((self.res.full_head, b",", memoryview(item)[1:]))

    def event_line(self, typ):
        """bytes: one watch event line (with the trailing newline)."""
        item = self.item
        if item == b"{}":
            return b'{"type":"%s","object":%s}}\n' % (typ.encode(), self.res.full_head)
        return b"".join((self.res.event_head[typ], memoryview(item)[1:], b"}\n"))


def with_rv(ver, rv):
    """A copy of a version with metadata.resourceVersion replaced (DELETED events)."""
    obj = dict(ver.obj)
    md = dict(obj.get("metadata") or {})
    md["resourceVersion"] = str(rv)
    obj["metadata"] = order_metadata(md)
    return Version(ver.res, obj, rv)


def order_metadata(md):
    out = {k: md[k] for k in METADATA_ORDER if k in md}
    for k, v in md.items():
        if k not in out:
            out[k] = v
    return out


class Entry:
    __slots__ = ("rv", "res", "key", "old", "new", "tomb")

    def __init__(self, rv, res, key, old, new, tomb):
        self.rv, self.res, self.key, self.old, self.new, self.tomb = rv, res, key, old, new, tomb


class Watcher:
    def __init__(self, store, res, selector, min_rv):
        self.res = res
        self.selector = selector
        self.min_rv = min_rv
        self.queue = []  # list of (type, Version)
        self.cond = threading.Condition(store.lock)
        self.close_reason = None  # None | Status dict (send ERROR, end stream) | "drop"
        self.registered = False
        self.conn = None  # the client socket, so "drop" can shut it down from another thread

    def unregister(self):
        """Stop counting/feeding this watch (idempotent).  Store lock held."""
        if self.registered:
            self.registered = False
            STATE.store.watchers[self.res.plural].discard(self)
            STATE.open_watches[self.res.plural] -= 1
            STATE.active.discard(self)
            STATE.store.changed.notify_all()

    def fail(self, status):
        """Send an ERROR event then end the stream.  Store lock held."""
        if self.close_reason is None:
            self.close_reason = status
        self.unregister()
        self.cond.notify()

    def drop(self):
        """Abrupt close: no terminating chunk.  Called with the store lock held."""
        self.close_reason = "drop"
        self.unregister()
        if self.conn is not None:
            try:  # plain socket shutdown on the fd (also for SSLSocket: no close_notify)
                socket.socket.shutdown(self.conn, socket.SHUT_RDWR)
            except OSError:
                pass
        self.cond.notify()

    def offer(self, e):
        """Called with the store lock held for every history entry of this resource."""
        if e.rv <= self.min_rv:
            return
        sel = self.selector
        old_m = e.old is not None and sel.matches(e.old.obj)
        if e.new is None:
            if old_m:
                self.queue.append(("DELETED", e.tomb))
        else:
            new_m = sel.matches(e.new.obj)
            if new_m:
                self.queue.append(("MODIFIED" if old_m else "ADDED", e.new))
            elif old_m:
                self.queue.append(("DELETED", with_rv(e.old, e.rv)))
        if self.queue:
            self.cond.notify()


class Store:
    def __init__(self, compact_keep=0):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on every RV bump / watch change
        self.rv = 1000
        self.compacted = self.rv  # RVs < compacted are gone
        self.objects = {name: {} for name in RESOURCES}  # key -> Version
        self.history = []  # Entry, increasing rv
        self.history_rvs = []
        self.watchers = {name: set() for name in RESOURCES}
        self.compact_keep = compact_keep
        self._snap_cache = {}  # (resource, rv) -> ([key], [Version]) sorted by key

    @staticmethod
    def key_of(res, ns, name):
        return f"{ns}/{name}" if res.namespaced else name

    # -- writes ---------------------------------------------------------------------------
    def put(self, rname, obj):
        """Create or replace; takes ownership of obj (freshly parsed JSON, never copied)."""
        res = RESOURCES[rname]
        md = obj.get("metadata")
        if not isinstance(md, dict) or not md.get("name"):
            raise ValueError("object.metadata.name is required")
        md = dict(md)
        if res.namespaced:
            md["namespace"] = md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        with self.lock:
            key = self.key_of(res, md.get("namespace"), md["name"])
            old = self.objects[rname].get(key)
            self.rv += 1
            rv = self.rv
            if old is not None:
                omd = old.obj["metadata"]
                md.setdefault("uid", omd.get("uid"))
                md["creationTimestamp"] = omd.get("creationTimestamp")
                if rname == "endpointslices":
                    md["generation"] = int(omd.get("generation") or 0) + 1
            else:
                md.setdefault("uid", str(uuid.uuid4()))
                if not md.get("creationTimestamp"):
                    md["creationTimestamp"] = now_rfc3339()
                if rname == "endpointslices":
                    md.setdefault("generation", 1)
            md["resourceVersion"] = str(rv)
            # metadata first, rest in the given order
            new_obj = {"metadata": order_metadata(md)}
            for k, v in obj.items():
                if k not in ("metadata", "kind", "apiVersion"):
                    new_obj[k] = v
            ver = Version(res, new_obj, rv)
            self.objects[rname][key] = ver
            self._record(Entry(rv, res, key, old, ver, None))
            return rv

    def delete(self, rname, ns, name):
        res = RESOURCES[rname]
        with self.lock:
            key = self.key_of(res, ns or "default" if res.namespaced else None, name)
            old = self.objects[rname].pop(key, None)
            if old is None:
                return None
            self.rv += 1
            rv = self.rv
            self._record(Entry(rv, res, key, old, None, with_rv(old, rv)))
            return rv

    def _record(self, e):
        self.history.append(e)
        self.history_rvs.append(e.rv)
        for w in self.watchers[e.res.plural]:
            w.offer(e)
        if self.compact_keep and len(self.history) > self.compact_keep:
            drop = len(self.history) - self.compact_keep
            self.compacted = self.history[drop - 1].rv
            del self.history[:drop]
            del self.history_rvs[:drop]
            self._prune_cache()
        self.changed.notify_all()

    def compact(self):
        with self.lock:
            self.rv += 1  # the compactor's own write (compact_rev_key)
            self.compacted = self.rv
            self.history.clear()
            self.history_rvs.clear()
            self._prune_cache()
            self.changed.notify_all()
            return self.rv

    def _prune_cache(self):
        for k in [k for k in self._snap_cache if k[1] < self.compacted]:
            del self._snap_cache[k]

    # -- reads ----------------------------------------------------------------------------
    def snapshot(self, rname, rv):
        """([key], [Version]) sorted by key for resource at rv (caller checked rv >= compacted)."""
        with self.lock:
            ck = (rname, rv)
            snap = self._snap_cache.get(ck)
            if snap is not None:
                return snap
            state = dict(self.objects[rname])
            if rv < self.rv:
                i = len(self.history_rvs)
                lo = bisect.bisect_right(self.history_rvs, rv)
                while i > lo:
                    i -= 1
                    e = self.history[i]
                    if e.res.plural != rname:
                        continue
                    if e.old is None:
                        state.pop(e.key, None)
                    else:
                        state[e.key] = e.old
        keys = sorted(state)
        snap = (keys, [state[k] for k in keys])
        with self.lock:
            if len(self._snap_cache) > 8:
                self._snap_cache.clear()
            if rv >= self.compacted:
                self._snap_cache[ck] = snap
        return snap

    def entries_after(self, rname, rv):
        i = bisect.bisect_right(self.history_rvs, rv)
        return [e for e in self.history[i:] if e.res.plural == rname]


# ----------------------------------------------------------------------------------------------
# Server state (faults, request log, watch bookkeeping)
# ----------------------------------------------------------------------------------------------


class State:
    def __init__(self, args):
        self.store = Store(args.compact_keep)
        self.lock = self.store.lock
        self.split = "none"
        self.bookmark_interval_ms = args.bookmark_interval_ms
        self.max_page = 0
        self.large_every = 0
        self.large_bytes = 200_000
        self.fail_next = None  # dict(count, status, retry_after)
        self.requests = []
        self.open_watches = {name: 0 for name in RESOURCES}
        self.active = set()  # WatchStream
        self.token_file = args.token_file
        self.client_ca = args.client_ca
        self.rand = random.Random(12345)

    def log_request(self, entry):
        with self.lock:
            self.requests.append(entry)

    def take_fault(self):
        with self.lock:
            f = self.fail_next
            if not f or f["count"] <= 0:
                return None
            f["count"] -= 1
            if f["count"] <= 0:
                self.fail_next = None
            return dict(f)

    def tokens(self):
        try:
            with open(self.token_file, "r") as fh:
                data = fh.read()
        except OSError:
            return set()
        toks = set()
        for line in data.splitlines():
            line = line.strip()
            if line:
                toks.add(line.split(",", 1)[0].strip())
        return toks


STATE = None  # set in main()

# ----------------------------------------------------------------------------------------------
# Chunked output with fault modes
# ----------------------------------------------------------------------------------------------


def chunk_frame(b):
    return b"%x\r\n" % len(b) + b + b"\r\n"


BYTE_FRAMES = [b"1\r\n" + bytes([i]) + b"\r\n" for i in range(256)]


class ChunkWriter:
    def __init__(self, sock_file, rand, sock=None):
        self.f = sock_file
        self.sock = sock  # if given, split "none" goes out with vectored writes (send_parts)
        self.rand = rand
        self.n = 0

    def write_lines(self, lines):
        """lines: list of bytes each ending with b'\\n'."""
        mode = STATE.split
        if not lines:
            return
        if mode == "random":
            data = b"".join(lines)
            pos = 0
            buf, size = [], 0
            while pos < len(data):
                # mostly small pieces, sometimes large ones; boundaries anywhere
                r = self.rand.random()
                if r < 0.3:
                    n = self.rand.randint(1, 8)
                elif r < 0.8:
                    n = self.rand.randint(1, 600)
                else:
                    n = self.rand.randint(1, 70000)
                piece = data[pos:pos + n]
                pos += len(piece)
                buf.append(chunk_frame(piece))
                size += len(piece)
                # separate socket writes now and then, so reads are fragmented too
                if size > 65536 or self.rand.random() < 0.1:
                    self.f.write(b"".join(buf))
                    buf, size = [], 0
                    if self.rand.random() < 0.02:
                        time.sleep(0.001)
            if buf:
                self.f.write(b"".join(buf))
            return
        if mode == "none" and self.sock is not None:
            self.n += len(lines)
            out = []
            for line in lines:
                out += (b"%x\r\n" % len(line), line, b"\r\n")
            send_parts(self.sock, out)
            return
        out = []
        for line in lines:
            self.n += 1
            if mode == "midline":
                h = max(1, len(line) // 2)
                out.append(chunk_frame(line[:h]))
                out.append(chunk_frame(line[h:]))
            elif mode == "bytewise" and self.n % 8 == 1:
                if len(line) <= 1024:
                    out.extend(BYTE_FRAMES[c] for c in line)
                else:  # long line: head and tail bytewise, the middle in one chunk
                    out.extend(BYTE_FRAMES[c] for c in line[:256])
                    out.append(chunk_frame(line[256:-256]))
                    out.extend(BYTE_FRAMES[c] for c in line[-256:])
            else:
                out.append(chunk_frame(line))
        if mode == "bytewise":
            for i in range(0, len(out), 64):  # many writes so the reader also sees short reads
                self.f.write(b"".join(out[i:i + 64]))
        else:
            self.f.write(b"".join(out))

    def end(self):
        self.f.write(b"0\r\n\r\n")


def pad_managed_fields(ver, nbytes):
    """Event JSON for ver with a large, realistic-looking managedFields entry added."""
    obj = dict(ver.obj)
    md = dict(obj["metadata"])
    fields = {}
    i = 0
    size = 0
    while size < nbytes:
        k = 'k:{"addresses":["10.%d.%d.%d"]}' % (i >> 16 & 255, i >> 8 & 255, i & 255)
        fields[k] = {".": {}, "f:addresses": {}, "f:conditions": {".": {}, "f:ready": {}},
                     "f:nodeName": {}, "f:targetRef": {}}
        size += len(k) + 110
        i += 1
    mf = list(md.get("managedFields") or [])
    mf.append({"manager": "sluice-fake-padding", "operation": "Update",
               "apiVersion": ver.res.api_version, "time": md.get("creationTimestamp"),
               "fieldsType": "FieldsV1", "fieldsV1": {"f:endpoints": fields}})
    md["managedFields"] = mf
    obj["metadata"] = order_metadata(md)
    return Version(ver.res, obj, ver.rv).full_json()


# ----------------------------------------------------------------------------------------------
# API HTTP handler
# ----------------------------------------------------------------------------------------------

PUBLIC_PATHS = {"/version", "/healthz", "/livez", "/readyz", "/api", "/apis", "/version/"}


class Route:
    def __init__(self, res, namespace, name, watch_path):
        self.res, self.namespace, self.name, self.watch_path = res, namespace, name, watch_path


def parse_route(path):
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        rest, group = parts[2:], ""
    elif len(parts) >= 3 and parts[0] == "apis" and parts[1] == "discovery.k8s.io" and parts[2] == "v1":
        rest, group = parts[3:], "discovery.k8s.io"
    else:
        return None
    watch_path = False
    if rest and rest[0] == "watch":
        watch_path, rest = True, rest[1:]
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2:
        return None
    res = RESOURCES.get(rest[0])
    if res is None or res.group != group:
        return None
    if ns is not None and not res.namespaced:
        return None
    name = rest[1] if len(rest) == 2 else None
    return Route(res, ns, name, watch_path)


class ApiHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-fake-apiserver"

    def log_message(self, fmt, *args):  # quiet
        pass

    def address_string(self):
        return "unix"

    # -- helpers ------------------------------------------------------------------------
    def _start(self, code, ctype, length=None, extra=None, chunked=False, flush=True):
        """Status line and headers; sent now, or (flush=False) returned as bytes so they can
        go out in the same write as the body."""
        self.send_response_only(code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", ctype)
        self.send_header("Date", self.date_time_string())
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if flush:
            self.end_headers()
            return None
        self._headers_buffer.append(b"\r\n")
        head = b"".join(self._headers_buffer)
        self._headers_buffer = []
        return head

    def _send_body(self, code, body, ctype="application/json", extra=None):
        """body: str, bytes, or a list of bytes-like parts (sent without joining them)."""
        if isinstance(body, str):
            body = body.encode()
        parts = body if isinstance(body, list) else [body]
        length = sum(map(len, parts))
        extra = dict(extra or {})
        if length >= 128 * 1024 and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            parts = gzip_parts(parts, length)
            length = sum(map(len, parts))
            extra["Content-Encoding"] = "gzip"
        self._status = code
        if not self._logged:  # log before replying so /requests is complete once the client has its answer
            self._log(code)
            self._logged = True
        head = self._start(code, ctype, length, extra, flush=False)
        parts.insert(0, head)
        send_parts(self.connection, parts)

    def _send_error(self, err):
        self._send_body(err.code, dumps(err.status), extra=err.headers)

    def _log(self, status):
        STATE.log_request({
            "method": self.command, "path": self._path, "query": self._query,
            "authorization": self.headers.get("Authorization") or "",
            "status": status, "client_cert_cn": self._cn, "time": time.time()})

    def _client_cn(self):
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            try:
                cert = conn.getpeercert()
            except (ValueError, ssl.SSLError):
                cert = None
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            return v
        return ""

    def _authenticate(self):
        """Returns None if allowed, else an ApiError(401)."""
        if not STATE.token_file and not STATE.client_ca:
            return None
        if self._cn or (STATE.client_ca and isinstance(self.connection, ssl.SSLSocket)
                        and self.connection.getpeercert()):
            return None
        authz = self.headers.get("Authorization")
        if authz:
            parts = authz.split(None, 1)
            if (STATE.token_file and len(parts) == 2 and parts[0].lower() == "bearer"
                    and parts[1].strip() in STATE.tokens()):
                return None
            return ApiError(401, "Unauthorized", "Unauthorized")
        if self._path.rstrip("/") in PUBLIC_PATHS or self._path in PUBLIC_PATHS:
            return None
        return ApiError(401, "Unauthorized", "Unauthorized")

    # -- entry points -------------------------------------------------------------------
    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        u = urllib.parse.urlsplit(self.path)
        self._path = u.path
        self._query = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        self._cn = self._client_cn()
        self._status = 0
        self._logged = False
        try:
            err = self._authenticate()
            if err:
                raise err
            f = STATE.take_fault()
            if f:
                raise self._fault_error(f)
            self._dispatch()
        except ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        except Exception as ex:  # a bug in this stand-in: answer 500 rather than hang the client
            import traceback
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            if not self._status:
                try:
                    self._send_error(ApiError(500, "InternalError", f"fake_apiserver bug: {ex!r}"))
                except OSError:
                    pass
        finally:
            if not self._logged:
                self._log(self._status)

    def _fault_error(self, f):
        code = int(f.get("status", 500))
        hdrs = {}
        details = None
        ra = f.get("retry_after")
        if ra is not None:
            hdrs["Retry-After"] = str(ra)
        if code == 429:
            msg = "Too many requests, please try again later."
            details = {"retryAfterSeconds": int(ra if ra is not None else 1)}
            hdrs.setdefault("Retry-After", str(details["retryAfterSeconds"]))
        elif code == 503:
            msg = "the server is currently unable to handle the request"
            if ra is not None:
                details = {"retryAfterSeconds": int(ra)}
        elif code == 500:
            msg = "Internal error occurred: injected fault"
            details = {"causes": [{"message": "injected fault"}]}
        elif code == 410:
            msg = MSG_CONTINUE_EXPIRED if self._query.get("continue") else MSG_LIST_EXPIRED
        else:
            msg = f"injected fault ({code})"
        return ApiError(code, REASONS.get(code, "Unknown"), msg, details, headers=hdrs)

    def _dispatch(self):
        path = self._path
        if self.command not in ("GET",):
            raise ApiError(405, "MethodNotAllowed",
                           f"the server does not allow this method on the requested resource")
        if path in ("/healthz", "/livez", "/readyz"):
            return self._send_body(200, "ok", "text/plain; charset=utf-8")
        if path == "/version":
            return self._send_body(200, json.dumps({
                "major": "1", "minor": "31", "gitVersion": "v1.31.0-sluice-fake",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5", "compiler": "gc",
                "platform": "linux/amd64"}, indent=2))
        if path == "/api":
            return self._send_body(200, dumps({"kind": "APIVersions", "versions": ["v1"],
                                               "serverAddressByClientCIDRs": [
                                                   {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}))
        if path == "/apis":
            return self._send_body(200, dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                "name": "discovery.k8s.io",
                "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}]}))
        route = parse_route(path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        q = self._query
        watch = route.watch_path or q.get("watch", "").lower() in ("1", "true")
        if route.name is not None and not watch:
            return self._get_one(route)
        label = parse_label_selector(q.get("labelSelector", ""))
        field = parse_field_selector(q.get("fieldSelector", ""), route.res)
        if route.name is not None:
            field.append(lambda o, n=route.name: (o.get("metadata") or {}).get("name") == n)
        sel = Selector(label, field, route.namespace)
        if watch:
            return self._watch(route, sel)
        return self._list(route, sel)

    def _get_one(self, route):
        res = route.res
        key = Store.key_of(res, route.namespace, route.name)
        with STATE.lock:
            ver = STATE.store.objects[res.plural].get(key)
        if ver is None:
            details = {"name": route.name}
            if res.group:
                details["group"] = res.group
            details["kind"] = res.plural
            raise ApiError(404, "NotFound", f'{res.qualified} "{route.name}" not found', details)
        self._send_body(200, ver.full_json())

    # -- list ---------------------------------------------------------------------------
    def _list(self, route, sel):
        q = self._query
        store = STATE.store
        res = route.res
        rv_s = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        cont = q.get("continue", "")
        try:
            limit = int(q.get("limit", "0") or 0)
        except ValueError:
            raise bad_request(f"invalid limit: {q.get('limit')}")
        req_limit = limit
        if STATE.max_page and (limit <= 0 or limit > STATE.max_page):
            limit = STATE.max_page
        if match and not rv_s:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match and cont:
            raise bad_request("resourceVersionMatch is forbidden when continue is provided")
        if match not in ("", "NotOlderThan", "Exact"):
            raise bad_request(f'resourceVersionMatch: Unsupported value: "{match}"')
        if match == "Exact" and rv_s == "0":
            raise bad_request('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        start = ""
        if cont:
            if rv_s and rv_s != "0":
                raise bad_request("specifying resource version is not allowed when using continue")
            try:
                pad = "=" * (-len(cont) % 4)
                tok = json.loads(base64.urlsafe_b64decode(cont + pad))
                tok_rv = int(tok["rv"])
                start = str(tok["start"])
            except Exception as ex:  # noqa: BLE001
                raise bad_request(f"continue key is not valid: {ex}")
            with STATE.lock:
                if tok_rv == -1:
                    snap_rv = store.rv
                elif tok_rv < store.compacted:
                    newtok = encode_continue(-1, start)
                    raise ApiError(410, "Expired", MSG_INCONSISTENT_CONTINUE,
                                   list_meta={"continue": newtok})
                else:
                    snap_rv = tok_rv
        else:
            snap_rv = None
            if rv_s and rv_s != "0":
                try:
                    want = int(rv_s)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv_s}")
                exact = match == "Exact" or (match == "" and req_limit > 0)
                deadline = time.monotonic() + 3
                with STATE.lock:
                    while want > store.rv and time.monotonic() < deadline:
                        store.changed.wait(deadline - time.monotonic())
                    if want > store.rv:
                        raise ApiError(504, "Timeout", f"Too large resource version: {want}, current: {store.rv}",
                                       {"causes": [{"reason": "ResourceVersionTooLarge",
                                                    "message": "Too large resource version"}],
                                        "retryAfterSeconds": 1})
                    if want < store.compacted:
                        raise ApiError(410, "Expired", MSG_LIST_EXPIRED)
                    snap_rv = want if exact else store.rv
            if snap_rv is None:
                with STATE.lock:
                    snap_rv = store.rv
        keys, vers = store.snapshot(res.plural, snap_rv)
        i = bisect.bisect_left(keys, start) if start else 0
        n = len(vers)
        next_key = None
        remaining = None
        pred = sel.version_predicate()
        if pred is None:  # everything matches: the page is a slice
            if limit > 0:
                page = vers[i:i + limit]
                end = i + len(page)
                if len(page) == limit and end < n:
                    next_key = keys[end - 1]
                    remaining = n - end
            else:
                page = vers[i:]
        else:
            it = filter(pred, vers[i:]) if i else filter(pred, vers)
            if limit > 0:
                page = list(itertools.islice(it, limit))
                if len(page) == limit and next(it, None) is not None:  # more matching items after
                    next_key = page[-1].key
                    if sel.empty:  # namespace only: count what is left in it
                        remaining = 1 + sum(1 for _ in it)
            else:
                page = list(it)
        meta = {"resourceVersion": str(snap_rv)}
        if next_key is not None:
            meta["continue"] = encode_continue(snap_rv, next_key + "\x00")
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        # [head, item, b",", item, ..., b"]}"]: the items' stored bytes go out as they are.
        if page:
            parts = [b","] * (2 * len(page) + 1)
            parts[1:-1:2] = [v.item for v in page]
            parts[0] = b"%s%s,\"items\":[" % (res.list_head, dumps(meta).encode())
            parts[-1] = b"]}"
        else:
            parts = [b"%s%s,\"items\":[]}" % (res.list_head, dumps(meta).encode())]
        self._send_body(200, parts)

    # -- watch --------------------------------------------------------------------------
    def _watch(self, route, sel):
        q = self._query
        store = STATE.store
        res = route.res
        rv_s = q.get("resourceVersion", "")
        allow_bm = q.get("allowWatchBookmarks", "").lower() in ("1", "true")
        send_initial = q.get("sendInitialEvents", "").lower() in ("1", "true")
        try:
            timeout = float(q.get("timeoutSeconds", "0") or 0)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {q.get('timeoutSeconds')}")
        if send_initial and (q.get("resourceVersionMatch") != "NotOlderThan" or not allow_bm):
            raise bad_request("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan "
                              "and allowWatchBookmarks to true")
        want = None
        if rv_s and rv_s != "0":
            try:
                want = int(rv_s)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_s}")
        # Headers go out first (the real server flushes them immediately).
        self._start(200, "application/json", chunked=True)
        self._status = 200
        self._log(200)
        self._logged = True
        cw = ChunkWriter(self.wfile, random.Random(STATE.rand.random()), self.connection)
        w = None
        initial = []
        initial_end_rv = None
        with STATE.lock:
            if want is not None and not send_initial and want < store.compacted:
                err = status_obj(410, "Expired", f"too old resource version: {want} ({store.compacted})")
                expired = err
            else:
                expired = None
                if want is None or send_initial:
                    min_rv = store.rv
                    for key, ver in sorted(store.objects[res.plural].items()):
                        if sel.matches(ver.obj):
                            initial.append(("ADDED", ver))
                    if send_initial:
                        initial_end_rv = store.rv
                else:
                    min_rv = want
                    w0 = Watcher(store, res, sel, want)
                    for e in store.entries_after(res.plural, want):
                        w0.offer(e)
                    initial = w0.queue
                w = Watcher(store, res, sel, max(min_rv, store.rv))
                w.conn = self.connection
                w.registered = True
                store.watchers[res.plural].add(w)
                STATE.open_watches[res.plural] += 1
                STATE.active.add(w)
                store.changed.notify_all()
        if expired is not None:
            try:
                cw.write_lines([('{"type":"ERROR","object":%s}\n' % dumps(expired)).encode()])
                cw.end()
            except OSError:
                self.close_connection = True
            return
        try:
            self._stream(cw, w, res, initial, initial_end_rv, allow_bm, timeout)
        finally:
            with STATE.lock:
                w.unregister()

    def _event_line(self, typ, ver):
        every = STATE.large_every
        self._evn = getattr(self, "_evn", 0) + 1
        if every and self._evn % every == 0:
            return b'{"type":"%s","object":%s}\n' % (typ.encode(), pad_managed_fields(ver, STATE.large_bytes))
        return ver.event_line(typ)

    def _bookmark_line(self, res, rv, initial_end=False):
        md = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": res.kind, "apiVersion": res.api_version, "metadata": md}
        obj.update(res.bookmark_body)
        return ('{"type":"BOOKMARK","object":%s}\n' % dumps(obj)).encode()

    def _client_gone(self):
        sock = self.connection
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            if isinstance(sock, ssl.SSLSocket):
                sock.setblocking(False)
                try:
                    data = sock.recv(1)
                except (ssl.SSLWantReadError, BlockingIOError):
                    return False
                finally:
                    sock.setblocking(True)
                return data == b""
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _stream(self, cw, w, res, initial, initial_end_rv, allow_bm, timeout):
        store = STATE.store
        start = time.monotonic()
        deadline = start + timeout if timeout > 0 else None
        next_bm = start + STATE.bookmark_interval_ms / 1000.0
        # initial events, in batches so huge lists don't build one giant buffer
        for i in range(0, len(initial), 256):
            cw.write_lines([self._event_line(t, v) for t, v in initial[i:i + 256]])
        if initial_end_rv is not None:
            cw.write_lines([self._bookmark_line(res, initial_end_rv, True)])
        while True:
            now = time.monotonic()
            with STATE.lock:
                wait = 0.2
                if allow_bm:
                    wait = min(wait, max(0.0, next_bm - now))
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - now))
                if not w.queue and w.close_reason is None and wait > 0:
                    w.cond.wait(wait)
                batch, w.queue = w.queue, []
                reason = w.close_reason
                now = time.monotonic()
                bm_rv = None
                timed_out = deadline is not None and now >= deadline
                if allow_bm and not batch and (now >= next_bm or timed_out):
                    bm_rv = store.rv
            if batch:
                cw.write_lines([self._event_line(t, v) for t, v in batch])
            if reason == "drop":
                self.close_connection = True
                return
            if isinstance(reason, dict):
                cw.write_lines([('{"type":"ERROR","object":%s}\n' % dumps(reason)).encode()])
                cw.end()
                return
            if bm_rv is not None:
                cw.write_lines([self._bookmark_line(res, bm_rv)])
                next_bm = time.monotonic() + STATE.bookmark_interval_ms / 1000.0
            if timed_out and not batch:
                cw.end()
                return
            if not batch and self._client_gone():
                self.close_connection = True
                return


def gzip_parts(parts, length):
    """gzip (level 1, as before: gzip.compress(body, 1)) of the concatenated parts, streamed
    through one compressor so no joined copy of the body is made.  Returns a list of parts."""
    co = zlib.compressobj(1, zlib.DEFLATED, -15)
    crc = 0
    out = [b"\x1f\x8b\x08\x00" + struct.pack("<L", int(time.time())) + b"\x04\xff"]
    for b in coalesce(parts, 65536):  # ~64 KiB per call: few calls, small reused buffers
        crc = zlib.crc32(b, crc)
        out.append(co.compress(b))
    out.append(co.flush())
    out.append(struct.pack("<LL", crc, length & 0xFFFFFFFF))
    return [o for o in out if o]


def coalesce(parts, size):
    """Yield the concatenation of parts in pieces of about size bytes (at least one part per
    piece; piece boundaries are found with C-level accumulate/bisect, not a per-part loop)."""
    ends = list(itertools.accumulate(map(len, parts)))
    n = len(parts)
    k = 0
    while k < n:
        base = ends[k - 1] if k else 0
        j = bisect.bisect_left(ends, base + size, k) + 1  # parts[k:j] reach size bytes
        j = min(max(j, k + 1), n)
        yield parts[k] if j == k + 1 else b"".join(parts[k:j])
        k = j


IOV_BATCH = 512  # below IOV_MAX (1024)
COALESCE = 65536  # below the default malloc mmap threshold, so buffers get reused


def send_parts(sock, parts):
    """Write a list of bytes-like parts to the connection.  Plain sockets get vectored
    sendmsg() calls straight from the parts (no joined copy of a multi-MB body); TLS sockets
    (no sendmsg) get the parts coalesced into writes of about COALESCE bytes."""
    if isinstance(sock, ssl.SSLSocket):
        for b in coalesce(parts, COALESCE):
            sock.sendall(b)
        return
    for k in range(0, len(parts), IOV_BATCH):
        batch = parts[k:k + IOV_BATCH]
        sent = sock.sendmsg(batch)
        if sent == sum(map(len, batch)):
            continue
        while batch:  # partial write (a signal, or a non-blocking peer): resume where it stopped
            j = 0
            while j < len(batch) and sent >= len(batch[j]):
                sent -= len(batch[j])
                j += 1
            batch = batch[j:]
            if batch and sent:
                batch[0] = memoryview(batch[0])[sent:]
            if batch:
                sent = sock.sendmsg(batch)


def encode_continue(rv, start):
    raw = dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ----------------------------------------------------------------------------------------------
# Control handler
# ----------------------------------------------------------------------------------------------


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def address_string(self):
        return "control"

    def _reply(self, code, obj):
        body = dumps(obj).encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def do_GET(self):
        p = urllib.parse.urlsplit(self.path).path
        if p == "/requests":
            with STATE.lock:
                return self._reply(200, list(STATE.requests))
        if p == "/state":
            return self._reply(200, state_json())
        self._reply(404, {"error": "not found"})

    def do_POST(self):
        p = urllib.parse.urlsplit(self.path).path
        try:
            body = self._body()
        except ValueError as ex:
            return self._reply(400, {"error": f"bad json: {ex}"})
        try:
            if p == "/objects":
                return self._objects(body)
            if p == "/delete":
                rname = body.get("resource")
                if rname not in RESOURCES:
                    return self._reply(400, {"error": f"unknown resource {rname!r}"})
                rv = STATE.store.delete(rname, body.get("namespace") or "", body.get("name", ""))
                if rv is None:
                    return self._reply(404, {"error": "not found"})
                return self._reply(200, {"resourceVersion": str(rv)})
            if p == "/faults":
                return self._faults(body)
            if p == "/wait":
                return self._wait(body)
            if p == "/reset_requests":
                with STATE.lock:
                    STATE.requests.clear()
                return self._reply(200, {"ok": True})
        except (ValueError, TypeError, KeyError) as ex:
            return self._reply(400, {"error": str(ex)})
        self._reply(404, {"error": "not found"})

    def _objects(self, body):
        rname = body.get("resource")
        if rname not in RESOURCES:
            return self._reply(400, {"error": f"unknown resource {rname!r}"})
        objs = body["objects"] if "objects" in body else [body.get("object")]
        rv = None
        for o in objs:
            if not isinstance(o, dict):
                return self._reply(400, {"error": "object must be a JSON object"})
            rv = STATE.store.put(rname, o)
        if rv is None:
            with STATE.lock:
                rv = STATE.store.rv
        return self._reply(200, {"resourceVersion": str(rv)})

    def _faults(self, body):
        if "down" in body:
            # Outside the store lock: down() waits for the accept loop, whose handlers take it.
            if body["down"]:
                API.down()
            else:
                try:
                    API.up()
                except OSError as e:
                    return self._reply(500, {"error": f"cannot listen again: {e}"})
        with STATE.lock:
            if "split" in body:
                if body["split"] not in ("none", "random", "bytewise", "midline"):
                    return self._reply(400, {"error": f"bad split {body['split']!r}"})
                STATE.split = body["split"]
                if "large_every" not in body:
                    STATE.large_every = 0 if body["split"] == "none" else 97
            if "large_every" in body:
                STATE.large_every = int(body["large_every"])
            if "large_bytes" in body:
                STATE.large_bytes = int(body["large_bytes"])
            if "bookmark_interval_ms" in body:
                STATE.bookmark_interval_ms = max(1, int(body["bookmark_interval_ms"]))
            if "max_page" in body:
                STATE.max_page = int(body["max_page"] or 0)
            if "fail_next" in body:
                f = body["fail_next"]
                if f:
                    STATE.fail_next = {"count": int(f.get("count", 1)), "status": int(f.get("status", 500)),
                                       "retry_after": f.get("retry_after")}
                else:
                    STATE.fail_next = None
            if body.get("compact"):
                STATE.store.compact()
            if body.get("error_410_on_watches"):
                reason = "Gone" if body["error_410_on_watches"] == "Gone" else "Expired"
                for w in list(STATE.active):
                    w.fail(status_obj(410, reason, "The resourceVersion for the provided watch is too old."))
            if body.get("drop_watches"):
                for w in list(STATE.active):
                    w.drop()
        return self._reply(200, {"ok": True})

    def _wait(self, body):
        want = body.get("open_watches") or {}
        want_rv = body.get("resourceVersion")
        deadline = time.monotonic() + float(body.get("timeout_ms", 5000)) / 1000.0

        def ok():
            if any(STATE.open_watches.get(r, 0) < int(n) for r, n in want.items()):
                return False
            return want_rv is None or STATE.store.rv >= int(want_rv)

        with STATE.lock:
            while not ok():
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._reply(408, {"ok": False, **state_json()})
                STATE.store.changed.wait(min(left, 0.1))
            return self._reply(200, {"ok": True, **state_json()})


def state_json():
    with STATE.lock:
        return {"resourceVersion": str(STATE.store.rv),
                "compactedResourceVersion": str(STATE.store.compacted),
                "open_watches": dict(STATE.open_watches),
                "objects": {k: len(v) for k, v in STATE.store.objects.items()},
                "api_up": API is not None and API.server is not None}


# ----------------------------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------------------------


class _Mixin(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    ssl_ctx = None
    conns = None  # the API server's open connections (a set), so "down" can cut them

    def finish_request(self, request, client_address):
        if self.conns is not None:
            with STATE.lock:
                self.conns.add(request)
        try:
            self._finish_request(request, client_address)
        finally:
            if self.conns is not None:
                with STATE.lock:
                    self.conns.discard(request)

    def _finish_request(self, request, client_address):
        if self.ssl_ctx is not None:
            try:
                request.settimeout(10)
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                try:
                    request.close()
                except OSError:
                    pass
                return
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (OSError, ssl.SSLError):
            pass

    def handle_error(self, request, client_address):
        pass


class UnixServer(_Mixin, socketserver.UnixStreamServer):
    request_queue_size = 128


class TcpServer(_Mixin, socketserver.TCPServer):
    allow_reuse_address = True
    request_queue_size = 128


def make_tcp_server(hostport, handler):
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    cls = TcpServer
    if ":" in host:
        cls = type("Tcp6Server", (TcpServer,), {"address_family": socket.AF_INET6})
    return cls((host, int(port)), handler)


def make_unix_server(path, handler):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return UnixServer(path, handler)


class ApiListener:
    """The API server's listener, which the "down" fault closes and reopens (same address, TLS
    context and handler) while the store, its resourceVersions and the control socket stay: an
    API server that is gone for a while and comes back, as after a restart with etcd intact."""

    def __init__(self, args, ctx):
        self.args, self.ctx = args, ctx
        self.server = None
        self.thread = None

    def up(self):
        if self.server is not None:
            return
        a = self.args
        srv = make_unix_server(a.unix, ApiHandler) if a.unix else make_tcp_server(a.listen, ApiHandler)
        srv.ssl_ctx = self.ctx
        srv.conns = set()
        self.server = srv
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                       daemon=True)
        self.thread.start()

    def down(self):
        """Stop accepting (connections are refused), end every watch and cut every open API
        connection mid-request, as a dead process's sockets are."""
        srv = self.server
        if srv is None:
            return
        self.server = None
        srv.shutdown()
        srv.server_close()
        with STATE.lock:
            for w in list(STATE.active):
                w.drop()
            conns = list(srv.conns)
        for c in conns:
            try:
                socket.socket.shutdown(c, socket.SHUT_RDWR)
            except OSError:
                pass
        if self.args.unix:
            try:
                os.unlink(self.args.unix)
            except OSError:
                pass


API = None  # ApiListener, set in main()


def load_preload(path):
    # Millions of acyclic JSON objects that live for the whole run: no cyclic GC passes over
    # them while loading (~1 s saved on the default cluster), and gc.freeze() keeps later
    # collections (triggered by request handling) from ever traversing them again.
    gc.disable()
    try:
        with open(path) as fh:
            data = json.load(fh)
        order = ["nodes", "services", "endpointslices", "endpoints", "pods"]
        for rname in order:
            for obj in data.get(rname) or []:
                STATE.store.put(rname, obj)
    finally:
        gc.enable()
        gc.freeze()
    unknown = set(data) - set(order)
    if unknown:
        print(f"fake_apiserver: ignoring unknown preload keys {sorted(unknown)}", file=sys.stderr)


def main(argv=None):
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--unix", help="serve the API on this Unix socket path")
    g.add_argument("--listen", help="serve the API on HOST:PORT (TCP)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--token-file")
    ap.add_argument("--control", required=True)
    ap.add_argument("--preload")
    ap.add_argument("--bookmark-interval-ms", type=int, default=1000)
    ap.add_argument("--compact-keep", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.unix and not args.listen:
        ap.error("one of --unix or --listen is required")
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        ap.error("--client-ca requires --tls-cert/--tls-key")

    STATE = State(args)
    if args.preload:
        load_preload(args.preload)

    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])

    global API
    API = ApiListener(args, ctx)
    API.up()
    ctl = make_unix_server(args.control, ControlHandler)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=ctl.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    # Shutdown: tell watches to go away, stop accept loops, remove socket files.
    with STATE.lock:
        for w in list(STATE.active):
            w.drop()
    API.down()
    ctl.shutdown()
    ctl.server_close()
    for p in (args.unix, args.control):
        if p:
            try:
                os.unlink(p)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
