import platform

import django
from django.db import connection
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from .models import Item


def index(request):
    context = {"python": platform.python_version(), "django": django.get_version()}
    return render(request, "hello/index.html", context)


def db(request):
    """Lists the rows, one a line, after a line naming the database."""
    lines = [f"{connection.vendor} database, {Item.objects.count()} items"]
    lines += [item.name for item in Item.objects.order_by("id")]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain")


def add(request):
    """GET /db/add?item=NAME inserts a row, then lists them all."""
    name = request.GET.get("item", "").strip()
    if not name:
        return HttpResponseBadRequest("say which: /db/add?item=NAME\n", content_type="text/plain")
    Item.objects.create(name=name[:200])
    return db(request)
