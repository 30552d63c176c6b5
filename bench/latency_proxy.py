"""A loopback HTTP proxy that adds a fixed latency to every request (for bench/run).

Each request is read, held for LATENCY seconds, then answered. The first time a request body
is seen it is forwarded to the upstream (moto); identical bodies are then answered from a
cache, so that moto's single-threaded Python does not serialise concurrent requests and every
request costs the same 50 ms, like a service with latency but ample capacity.

usage: latency_proxy.py UPSTREAM_PORT LATENCY_MS  (prints the port it listens on)
"""

import http.client
import socketserver
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
    request_queue_size = 1024


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
