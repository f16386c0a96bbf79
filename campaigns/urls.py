"""Public URLs of the campaigns app, one list per area."""

from campaigns.audiences.urls import urlpatterns as audience_urls
from campaigns.email.urls import urlpatterns as email_urls
from campaigns.people.urls import urlpatterns as privacy_urls

urlpatterns = [*email_urls, *audience_urls, *privacy_urls]
