from django.urls import path

from campaigns.people import api

urlpatterns = [path("api/v1/privacy/person", api.person, name="api-privacy-person")]
