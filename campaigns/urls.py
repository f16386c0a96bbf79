"""Public URLs of the campaigns app, one list per area."""

from campaigns.urls_audiences import urlpatterns as audience_urls
from campaigns.urls_email import urlpatterns as email_urls
from campaigns.urls_privacy import urlpatterns as privacy_urls

urlpatterns = [*email_urls, *audience_urls, *privacy_urls]
