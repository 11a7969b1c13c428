"""A tiny web app for Ouro's end-to-end tests: answers with its DYNO and can report what a
dyno can see of its surroundings (uid, capabilities, the Docker socket, other addresses)."""
import http.server
import json
import os
import socket
import socketserver
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/inspect":
            body = json.dumps(inspect()).encode()
        elif url.path == "/connect":
            body = json.dumps(connect(query["addr"][0])).encode()
        elif url.path == "/headers":
            body = json.dumps(dict(self.headers)).encode()
        else:
            body = (os.environ.get("DYNO", "?") + " " + os.environ.get("GREETING", "hello") + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def inspect():
    status = open("/proc/self/status").read()
    cap_eff = [l.split()[1] for l in status.splitlines() if l.startswith("CapEff:")][0]
    return {
        "uid": os.getuid(),
        "cap_eff": cap_eff,
        "docker_socket": os.path.exists("/var/run/docker.sock") or os.path.exists("/run/docker.sock"),
        "profile": os.environ.get("FROM_PROFILE"),
        "port": os.environ.get("PORT"),
        "ps": os.environ.get("PS"),
        "env_token": any("TOKEN" in k for k in os.environ),
    }


def connect(addr):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return {"connected": True}
    except OSError as e:
        return {"connected": False, "error": str(e)}


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
