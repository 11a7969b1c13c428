"""A WSGI app for gunicorn: says which Python and gunicorn serve it."""

import os
import platform

import gunicorn


def app(environ, start_response):
    body = (
        f"hello from poetry: Python {platform.python_version()}, gunicorn {gunicorn.__version__} "
        f"({os.environ.get('GREETING', 'no greeting')})\n"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
