#!/usr/bin/python3
"""Pod server for the sluice e2e tests.

Runs inside one pod network namespace and serves, dual-stack (one `::` socket
with IPV6_V6ONLY=0 per protocol):

  * HTTP/1.1 on TCP 8080: any GET is answered with body = the pod name,
    keep-alive supported (Content-Length is always set). Headers X-Pod and
    X-Peer (the client address as this pod sees it) help debugging.
    GET /peer answers "NAME PEER_IP PEER_PORT" (the source address and port
    this pod saw: source preservation / SNAT checks). GET /bytes/N answers N
    bytes (up to 64 MiB; path MTU checks of downloads). GET /stream?interval_ms=I
    is a long-lived stream: chunked, one line "NAME SEQ" every I ms (default 50)
    until the client leaves (at most 600 s). POST (any path) reads the
    body (Content-Length, up to 64 MiB) and answers "NAME received N".
  * UDP echo on 5353: every datagram is answered with the pod name; a
    datagram starting with b"peer" is answered "NAME PEER_IP PEER_PORT".

The process runs until SIGTERM/SIGINT. When both sockets are bound it writes
--ready-file so the caller can wait on a condition instead of sleeping.
"""

import argparse
import http.server
import os
import signal
import socket
import socketserver
import sys
import threading
import time


class DualStackHTTPServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


MAX_UPLOAD = 64 << 20
STREAM_MAX_S = 600


def peer_text(pod_name, addr):
    ip = addr[0]
    if ip.startswith("::ffff:"):  # IPv4 client on the dual-stack socket
        ip = ip[len("::ffff:"):]
    return f"{pod_name} {ip} {addr[1]}"


def make_handler(pod_name):
    name_body = pod_name.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # idle keep-alive connections are closed after this many seconds,
        # so no handler thread can live forever
        timeout = 30

        def reply(self, body):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Pod", pod_name)
            self.send_header("X-Peer", self.client_address[0])
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/peer":
                self.reply(peer_text(pod_name, self.client_address).encode())
            elif path.startswith("/bytes/"):
                self.send_bytes(path[len("/bytes/"):])
            elif path == "/stream":
                self.send_stream()
            else:
                self.reply(name_body)

        def send_bytes(self, count):
            try:
                n = int(count)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_UPLOAD:
                self.send_error(400, "bad byte count")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.send_header("X-Pod", pod_name)
            self.end_headers()
            chunk = bytes(range(256)) * 256  # 64 KiB
            sent = 0
            while sent < n:
                k = min(len(chunk), n - sent)
                self.wfile.write(chunk[:k])
                sent += k

        def send_stream(self):
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            params = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
            try:
                interval = min(max(int(params.get("interval_ms", "50")), 1), 10000) / 1000.0
            except ValueError:
                self.send_error(400, "bad interval_ms")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Pod", pod_name)
            self.end_headers()
            end = time.monotonic() + STREAM_MAX_S
            seq = 0
            try:
                while time.monotonic() < end:
                    line = f"{pod_name} {seq}\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                    seq += 1
                    time.sleep(interval)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client left
            self.close_connection = True

        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = -1
            if n < 0 or n > MAX_UPLOAD:
                self.send_error(400, "bad Content-Length")
                return
            got = 0
            while got < n:
                d = self.rfile.read(min(65536, n - got))
                if not d:
                    break
                got += len(d)
            if got != n:
                self.close_connection = True
                return
            self.reply(f"{pod_name} received {got}".encode())

        def log_message(self, fmt, *args):  # keep the log quiet
            pass

    return Handler


def udp_echo(sock, pod_name):
    reply = pod_name.encode()
    while True:
        try:
            data, peer = sock.recvfrom(2048)
            if data.startswith(b"peer"):
                sock.sendto(peer_text(pod_name, peer).encode(), peer)
            else:
                sock.sendto(reply, peer)
        except OSError:
            return


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="pod name returned to clients")
    ap.add_argument("--http-port", type=int, default=8080)
    ap.add_argument("--udp-port", type=int, default=5353)
    ap.add_argument("--ready-file", help="written once both sockets are bound")
    args = ap.parse_args()

    httpd = DualStackHTTPServer(("::", args.http_port), make_handler(args.name))

    usock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    usock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    usock.bind(("::", args.udp_port))
    threading.Thread(target=udp_echo, args=(usock, args.name), daemon=True).start()

    def stop(signum, frame):
        # shutdown() blocks until serve_forever returns: call it off-thread
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, args.ready_file)

    print(f"{args.name}: http :{args.http_port} udp :{args.udp_port} ready",
          file=sys.stderr, flush=True)
    httpd.serve_forever(poll_interval=0.2)
    usock.close()
    httpd.server_close()


if __name__ == "__main__":
    main()
