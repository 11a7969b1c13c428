#!/usr/bin/env python3
"""A static route source for bench/router/run.sh.

Usage: route_source.py HOST BACKEND_ADDR. Serves GET /routes (with or without ?after=N) with one
route, version 1, on 127.0.0.1 at a kernel-picked port, printed as
`route-source listening on http://ADDR`. Long polls with after>=1 are held 25 s, as the
dyno runner does, so the router does not poll in a loop.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HOST, BACKEND = sys.argv[1], sys.argv[2]
TABLE = json.dumps(
    {"version": 1, "routes": [{"app": "bench", "hosts": [HOST], "backends": [{"dyno": "web.1", "addr": BACKEND}]}]}
).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        after = parse_qs(urlparse(self.path).query).get("after", ["0"])[0]
        if int(after) >= 1:
            time.sleep(25)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(TABLE)))
        self.end_headers()
        self.wfile.write(TABLE)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"route-source listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
