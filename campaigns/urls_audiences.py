from django.urls import path

from campaigns import audience_api

urlpatterns = [
    path(
        "api/v1/audiences/<int:audience_id>/members",
        audience_api.members,
        name="api-audience-members",
    ),
    path(
        "api/v1/audiences/<int:audience_id>/changes",
        audience_api.changes,
        name="api-audience-changes",
    ),
    path(
        "api/v1/audiences/<int:audience_id>/export",
        audience_api.export,
        name="api-audience-export",
    ),
    path(
        "v1/audiences/<str:write_key>/<str:anonymous_id>",
        audience_api.tags,
        name="audience-tags",
    ),
]
