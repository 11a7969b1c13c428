"""A web app for Ouro's log tests: prints one line per request with the request id it was
given (the router's `X-Request-Id`), and exits with status 3 when asked for /crash."""
import http.server
import os
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        print(f"request_id={self.headers.get('X-Request-Id', '-')} path={self.path}", flush=True)
        if self.path == "/crash":
            print("crashing on purpose", file=sys.stderr, flush=True)
            os._exit(3)
        body = b"logged\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


port = int(os.environ.get("PORT", "5000"))
print(f"booting on port {port}", file=sys.stderr, flush=True)
Server(("0.0.0.0", port), Handler).serve_forever()
