from django.urls import path

from hello import views

urlpatterns = [
    path("", views.index, name="index"),
    path("db", views.db, name="db"),
    path("db/add", views.add, name="add"),
]
