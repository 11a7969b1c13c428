"""Serves one line on $PORT: the Python that runs it, six from the Pipfile.lock, and whether the
dev packages (idna) were left out, as a build must."""

import importlib.util
import os
import platform
from http.server import BaseHTTPRequestHandler, HTTPServer

import six


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        dev = "with" if importlib.util.find_spec("idna") else "without"
        body = (
            f"hello from pipenv: Python {platform.python_version()}, six {six.__version__}, "
            f"{dev} dev packages ({os.environ.get('GREETING', 'no greeting')})\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Hello).serve_forever()
