from django.urls import path

from campaigns.audiences import api

urlpatterns = [
    path(
        "api/v1/audiences/<int:audience_id>/members",
        api.members,
        name="api-audience-members",
    ),
    path(
        "api/v1/audiences/<int:audience_id>/changes",
        api.changes,
        name="api-audience-changes",
    ),
    path(
        "api/v1/audiences/<int:audience_id>/export",
        api.export,
        name="api-audience-export",
    ),
    path(
        "v1/audiences/<str:write_key>/<str:anonymous_id>",
        api.tags,
        name="audience-tags",
    ),
]
