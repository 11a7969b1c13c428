"""A tiny web app that uses two packages from PyPI (six, idna) installed by the buildpack."""
import http.server
import os

import idna
import six


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from six {six.__version__} and idna {idna.encode('bücher.example').decode()} ({os.environ.get('GREETING', 'no greeting')})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
