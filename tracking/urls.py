from django.urls import path

from tracking import api, views

urlpatterns = [
    path("v1/batch", views.batch, name="ingest-batch"),
    path("v1/import", views.batch, name="ingest-import"),
    path("v1/track", views.track, name="ingest-track"),
    path("v1/page", views.page, name="ingest-page"),
    path("v1/screen", views.screen, name="ingest-screen"),
    path("v1/identify", views.identify, name="ingest-identify"),
    path("v1/alias", views.alias, name="ingest-alias"),
    path("v1/group", views.group, name="ingest-group"),
    path("v1/settings/<str:write_key>", views.site_settings, name="site-settings"),
    path("api/v1/profiles/<str:identifier>", api.profile_detail, name="api-profile"),
]
