from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from reengage import demo
from reengage.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
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
