from django.conf import settings
from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

from reengage import demo
from reengage.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on every page that names no icon (the admin, the
    # demo store before its <link rel="icon">): a redirect rather than a 404 in the log.
    path(
        "favicon.ico", lambda request: HttpResponsePermanentRedirect(static("reengage/favicon.svg"))
    ),
    path("admin/", admin.site.urls),
    path("", include("tracking.urls")),
    path("", include("tracking.snippet_urls")),
    path("", include("campaigns.urls")),
]

# The demo store mints valid user_hashes for its sign-up form: served only in
# development or where it is switched on on purpose (DEMO_ENABLED).
if settings.DEMO_ENABLED:
    urlpatterns += [
        path("demo/", demo.home, name="demo-home"),
        path("demo/product/<slug:product_id>/", demo.product, name="demo-product"),
        path("demo/cart/", demo.cart, name="demo-cart"),
        path("demo/checkout/", demo.checkout, name="demo-checkout"),
        path("demo/signup/", demo.signup, name="demo-signup"),
    ]
