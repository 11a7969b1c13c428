"""Serves one line on $PORT: the Python that runs it, idna at work, and whether the dev group
(six) was left out, as a build must."""

import importlib.util
import os
import platform
from http.server import BaseHTTPRequestHandler, HTTPServer

import idna


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        dev = "with" if importlib.util.find_spec("six") else "without"
        body = (
            f"hello from uv: Python {platform.python_version()}, idna {idna.encode('bücher.example').decode()}, "
            f"{dev} dev dependencies ({os.environ.get('GREETING', 'no greeting')})\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Hello).serve_forever()
