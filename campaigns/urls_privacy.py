from django.urls import path

from campaigns import privacy_api

urlpatterns = [path("api/v1/privacy/person", privacy_api.person, name="api-privacy-person")]
