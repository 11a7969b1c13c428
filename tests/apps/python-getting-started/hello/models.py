from django.db import models


class Item(models.Model):
    """A row that /db/add writes and /db lists."""

    name = models.CharField(max_length=200)
    added = models.DateTimeField(auto_now_add=True)
