"""The demo store at /demo/: a few pages carrying the snippet, for a newcomer to click.

It is an ordinary "customer site" that happens to be served by reengage itself;
`manage.py seed_demo` creates its Site (write key), campaign, template and
audience. The sign-up form shows the one server-side step a real shop needs:
computing `user_hash` so the visitor's email counts as verified.
"""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

# The site is named after the shop its pages show, so the email's body, its From
# name and its footer all say the same name.
DEMO_SITE_NAME = "Trailhead Supply (demo)"
LEGACY_DEMO_SITE_NAME = "Demo store"

PRODUCTS = [
    {"id": "mug", "name": "Enamel camp mug", "price": 18.0, "color": "#2f6f5e",
     "blurb": "Holds coffee, soup, or small tools. Chips with character."},
    {"id": "socks", "name": "Merino hiking socks", "price": 24.0, "color": "#8a4b2a",
     "blurb": "Warm when wet, quiet in the tent, good for 600 km."},
    {"id": "lamp", "name": "Folding lantern", "price": 39.0, "color": "#c28e0e",
     "blurb": "Three brightness levels and a hook you will actually use."},
    {"id": "map", "name": "Waterproof trail map", "price": 12.5, "color": "#345995",
     "blurb": "Tear-proof paper, contour lines, and every hut in the valley."},
]  # fmt: skip


def demo_site():
    from tracking.models import Site

    site = Site.objects.filter(name=DEMO_SITE_NAME).first()
    if site is None:
        raise Http404("The demo store is not set up: run `manage.py seed_demo`.")
    return site


def _context(request: HttpRequest, **extra) -> dict:
    from tracking.management.commands.createsite import loader_for

    site = demo_site()
    return {
        "site": site,
        "snippet": loader_for(site),
        "products": PRODUCTS,
        "public_url": settings.PUBLIC_URL,
        **extra,
    }


def _product(product_id: str) -> dict:
    for product in PRODUCTS:
        if product["id"] == product_id:
            return product
    raise Http404("No such product in the demo store.")


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/home.html", _context(request))


def product(request: HttpRequest, product_id: str) -> HttpResponse:
    return render(request, "demo/product.html", _context(request, product=_product(product_id)))


def cart(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/cart.html", _context(request))


def checkout(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/checkout.html", _context(request))


def signup(request: HttpRequest) -> HttpResponse:
    """The shop's own sign-up: on POST, its backend computes user_hash for the snippet."""
    context = _context(request)
    if request.method == "POST":
        email = request.POST.get("email", "").strip()
        if "@" not in email or len(email) > 254:
            context["error"] = "Please enter an email address."
        else:
            user_id = "demo-" + email.lower()
            context["identified"] = {
                "user_id": user_id,
                "email": email,
                # The proof bound to the userId and email (docs/security.md, "Trust model").
                "user_hash": context["site"].identity_proof(user_id, email),
            }
    return render(request, "demo/signup.html", context)
