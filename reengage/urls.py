from django.contrib import admin
from django.urls import include, path

from reengage.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("tracking.urls")),
    path("", include("tracking.snippet_urls")),
    path("", include("campaigns.urls")),
]
