"""Email URLs: Anymail's ESP webhooks and the links inside every email."""

from django.urls import include, path

from campaigns.email import views
from campaigns.email.esp_webhooks import tracking_urlpatterns

urlpatterns = [
    # /anymail/<esp>/tracking/ — basic auth with ANYMAIL_WEBHOOK_SECRET (see settings).
    path("anymail/", include((tracking_urlpatterns(), "anymail"))),
    path("email/unsubscribe/<str:token>/", views.unsubscribe, name="email-unsubscribe"),
    path("email/preferences/<str:token>/", views.preferences, name="email-preferences"),
    path("email/c/<str:token>/", views.click, name="email-click"),
    path("email/o/<str:token>/", views.open_pixel, name="email-open"),
    path("email/view/<str:token>/", views.view_in_browser, name="email-view"),
]
