from django.contrib import admin
from django.urls import include, path

from reengage import demo
from reengage.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("demo/", demo.home, name="demo-home"),
    path("demo/product/<slug:product_id>/", demo.product, name="demo-product"),
    path("demo/cart/", demo.cart, name="demo-cart"),
    path("demo/checkout/", demo.checkout, name="demo-checkout"),
    path("demo/signup/", demo.signup, name="demo-signup"),
    path("", include("tracking.urls")),
    path("", include("tracking.snippet_urls")),
    path("", include("campaigns.urls")),
]
