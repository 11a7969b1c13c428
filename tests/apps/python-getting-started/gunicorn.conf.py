# gunicorn's configuration (gunicorn reads ./gunicorn.conf.py by itself):
# https://docs.gunicorn.org/en/stable/settings.html
# The Python buildpack's .profile.d sets GUNICORN_CMD_ARGS (--access-logfile -) and
# WEB_CONCURRENCY (from the dyno's memory and CPUs), which this file uses.
import os

# Web dynos must listen on $PORT. `[::]` takes IPv6 and IPv4 connections (dynos have IPv6).
bind = ["[::]:{}".format(os.environ.get("PORT", 5006))]

# Threads suit blocking I/O (the database) better than the default sync worker.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", 1))
threads = 5

# Load the app once before forking the workers: less memory, faster boots.
preload_app = True

# Less than the 30 s a dyno gets between SIGTERM and SIGKILL.
timeout = 20
graceful_timeout = 20

accesslog = "-"
