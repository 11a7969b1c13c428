"""An app that keeps rows in PostgreSQL (DATABASE_URL) and a counter in Redis (REDIS_URL),
with psycopg and redis from PyPI: what `ouro addons:create` attaches is what it uses."""
import http.server
import os
from urllib.parse import parse_qs, urlparse

import psycopg
import redis


def pg(sql, *args):
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, name text NOT NULL)")
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else None


def items():
    return ",".join(name for (name,) in pg("SELECT name FROM items ORDER BY id"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        try:
            if url.path == "/pg/add":
                pg("INSERT INTO items (name) VALUES (%s)", query["item"][0])
                body = f"items: {items()}"
            elif url.path == "/pg":
                body = f"items: {items()}"
            elif url.path == "/redis/incr":
                body = f"counter: {redis.from_url(os.environ['REDIS_URL'], socket_timeout=5).incr('counter')}"
            elif url.path == "/redis":
                value = redis.from_url(os.environ["REDIS_URL"], socket_timeout=5).get("counter")
                body = f"counter: {int(value or 0)}"
            else:
                body = " ".join(f"{k}={'set' if os.environ.get(k) else 'unset'}" for k in ("DATABASE_URL", "REDIS_URL"))
            status = 200
        except Exception as e:  # the test reads why
            status, body = 500, f"error: {type(e).__name__}: {e}"
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
