"""A loopback HTTP proxy that adds a fixed latency to every request (for bench/run).

Each request is read, held for LATENCY seconds, then answered. The first time a request body
is seen it is forwarded to the upstream (moto); identical bodies are then answered from a
cache, so that moto's single-threaded Python does not serialise concurrent requests and every
request costs the same 50 ms, like a service with latency but ample capacity.

With CERT and KEY (PEM files), it speaks TLS: the loopback HTTPS front that real AWS endpoints
are, so that the cost of the client's handshakes is measured too.

usage: latency_proxy.py UPSTREAM_PORT LATENCY_MS [CERT KEY]  (prints the port it listens on)
"""

import http.client
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

UPSTREAM = int(sys.argv[1])
LATENCY = int(sys.argv[2]) / 1000.0
CACHE = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        started = time.monotonic()
        key = (self.path, self.headers.get("X-Amz-Target"), body)
        with LOCK:
            cached = CACHE.get(key)
        if cached is None:
            conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            cached = (resp.status, resp.getheaders(), resp.read())
            conn.close()
            if cached[0] == 200:
                with LOCK:
                    CACHE[key] = cached
        status, headers, data = cached
        time.sleep(max(0.0, LATENCY - (time.monotonic() - started)))
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A backlog far above the 50 connections measured, so that none waits in the queue.
    request_queue_size = 1024
    tls = None

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is not None:
            # The handshake happens in the handler's thread, on the first read.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


server = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 4:
    server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.tls.load_cert_chain(sys.argv[3], sys.argv[4])
print(server.server_address[1], flush=True)
server.serve_forever()
