"""Settings of the getting-started app: twelve-factor, from the environment.

DATABASE_URL (a PostgreSQL add-on) selects the database, over TLS; without it (the build's
collectstatic, a laptop) a SQLite file in the app's directory serves.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# A config var in production; a random key otherwise (this app keeps no sessions).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# The router forwards requests for the app's domains; it decides which hosts reach the app.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "hello",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT itself, with far-future caching of the hashed names.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "gettingstarted.urls"
WSGI_APPLICATION = "gettingstarted.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]

if "DATABASE_URL" in os.environ:
    DATABASES = {
        "default": dj_database_url.config(conn_max_age=600, conn_health_checks=True, ssl_require=True),
    }
else:
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# collectstatic (run by the buildpack at build time) copies the apps' static files here, with
# content hashes in their names, compressed, and a manifest (staticfiles.json).
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_URL = "static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_KEEP_ONLY_HASHED_FILES = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
