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
    # Segment Analytics.js 2.0 posts to its short paths: /v1/<the type's first letter>,
    # and /v1/b for its batching delivery strategy.
    path("v1/b", views.batch, name="ingest-b"),
    path("v1/t", views.track, name="ingest-t"),
    path("v1/p", views.page, name="ingest-p"),
    path("v1/s", views.screen, name="ingest-s"),
    path("v1/i", views.identify, name="ingest-i"),
    path("v1/a", views.alias, name="ingest-a"),
    path("v1/g", views.group, name="ingest-g"),
    path("v1/settings/<str:write_key>", views.site_settings, name="site-settings"),
    path("api/v1/profiles/<str:identifier>", api.profile_detail, name="api-profile"),
]
