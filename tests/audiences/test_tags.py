"""On-site tags: the endpoint tags.js asks, and tags.js in a real Chromium."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from campaigns.audiences import membership
from campaigns.models import Audience
from tests.audiences.conftest import make_person
from tests.browser import launch_chromium
from tests.factories import make_site
from tracking.keys import clear_key_cache

GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"


@pytest.fixture(autouse=True)
def fresh_keys():
    clear_key_cache()
    yield
    clear_key_cache()


def now() -> datetime:
    return datetime.now(UTC)


def tagged_audience(site, **fields) -> Audience:
    defaults = {"name": "Tagged", "tag_type": "image", "tag_url": "https://ads.example/p.gif"}
    return Audience.objects.create(site=site, **{**defaults, **fields})


def join(audience, person, at=None) -> None:
    membership.add_members([(audience.id, person.id)], now=at or now())


# --- the endpoint ----------------------------------------------------------------------


@pytest.fixture
def site(db):
    return make_site()


def tags_of(client, site, anonymous_id, **headers):
    return client.get(f"/v1/audiences/{site.write_key}/{anonymous_id}", **headers)


def test_a_member_gets_the_tags_of_their_audiences(client, site):
    image = tagged_audience(site)
    meta = tagged_audience(site, name="Meta", tag_type="meta_pixel", tag_event="WinBack")
    untagged = Audience.objects.create(site=site, name="No tag")
    person = make_person(site)
    for audience in (image, meta, untagged):
        join(audience, person)
    response = tags_of(
        client, site, person.visitors.get().anonymous_id, HTTP_ORIGIN="https://shop.test"
    )
    assert response.json() == {
        "tags": [
            {"audience": image.id, "type": "image", "url": "https://ads.example/p.gif"},
            {"audience": meta.id, "type": "meta_pixel", "event": "WinBack"},
        ]
    }
    assert response["Access-Control-Allow-Origin"] == "https://shop.test"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize(
    "who", [{"gpc": True}, {"advertising": False}], ids=["GPC", "refused advertising"]
)
def test_people_who_may_not_see_ads_get_no_tags(client, site, who):
    person = make_person(site, **who)
    join(tagged_audience(site), person)
    assert tags_of(client, site, person.visitors.get().anonymous_id).json() == {"tags": []}


def test_a_browser_sending_gpc_gets_no_tags(client, site):
    person = make_person(site)
    join(tagged_audience(site), person)
    response = tags_of(client, site, person.visitors.get().anonymous_id, HTTP_SEC_GPC="1")
    assert response.json() == {"tags": []}


def test_expired_and_removed_memberships_fire_nothing(client, site):
    old, converted = make_person(site), make_person(site)
    audience = tagged_audience(site, lifetime_days=1)
    join(audience, old, at=now() - timedelta(days=2))
    join(audience, converted)
    membership.remove_profiles([converted.id], now=now(), reason="converted")
    for person in (old, converted):
        assert tags_of(client, site, person.visitors.get().anonymous_id).json()["tags"] == []


def test_unknown_keys_secret_keys_and_foreign_origins_are_refused(client, site):
    assert client.get("/v1/audiences/wk_nope/anon-1").status_code == 404
    assert client.get(f"/v1/audiences/{site.secret_key}/anon-1").status_code == 404
    response = tags_of(client, site, "anon-1", HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403
    assert response.json()["field"] == "Origin"
    assert "Access-Control-Allow-Origin" not in response


# --- tags.js in Chromium ----------------------------------------------------------------


class Shop:
    """The customer's site on its own origin; counts hits on its tracking pixel."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.pixel_hits: list[str] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                if path == "/pixel.gif":
                    shop.pixel_hits.append(self.path)
                    body, kind = b"GIF89a", "image/gif"
                elif path in shop.pages:
                    body, kind = shop.pages[path].encode(), "text/html"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page_for(self, live_server, site, anonymous_id: str) -> str:
        self.pages[f"/{anonymous_id}"] = f"""<!doctype html><title>shop</title>
<script src="{live_server.url}/static/reengage/tags.js"></script>
<script>
  window.tagsDone = ReengageTags.run({{api: "{live_server.url}", writeKey: "{site.write_key}",
                                       anonymousId: "{anonymous_id}", advertising: true}});
</script>"""
        return f"{self.url}/{anonymous_id}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chromium():
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def shop():
    server = Shop()
    yield server
    server.close()


@pytest.fixture
def browser_site(transactional_db, shop):
    site = make_site()
    audience = tagged_audience(site, tag_url=f"{shop.url}/pixel.gif?audience=1")
    return site, audience


def load(context, url: str) -> tuple:
    """Open `url` in a new tab, wait for tags.js to finish: (page, the tags it received)."""
    page = context.new_page()
    page.goto(url)
    return page, page.evaluate("window.tagsDone")


def settle(page, shop, expected: int) -> None:
    """Wait until the shop saw `expected` pixel hits, then a little longer for strays."""
    for _ in range(50):
        if len(shop.pixel_hits) >= expected:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)


@pytest.mark.browser
def test_a_members_page_fires_the_tag_once_per_session(chromium, live_server, shop, browser_site):
    site, audience = browser_site
    person = make_person(site)
    join(audience, person)
    url = shop.page_for(live_server, site, person.visitors.get().anonymous_id)
    context = chromium.new_context()
    page, fired = load(context, url)
    assert [t["audience"] for t in fired] == [audience.id]
    settle(page, shop, 1)
    assert len(shop.pixel_hits) == 1
    page.reload()
    assert len(page.evaluate("window.tagsDone")) == 1  # still a member, but fired already
    page.goto(url)
    page.evaluate("window.tagsDone")
    settle(page, shop, 2)
    assert len(shop.pixel_hits) == 1
    context.close()
    # A new browser session fires it again, once.
    page, _ = load(chromium.new_context(), url)
    settle(page, shop, 2)
    assert len(shop.pixel_hits) == 2


@pytest.mark.browser
def test_a_non_members_page_never_fires_the_tag(chromium, live_server, shop, browser_site):
    site, _ = browser_site
    stranger = make_person(site)
    context = chromium.new_context()
    page, fired = load(
        context, shop.page_for(live_server, site, stranger.visitors.get().anonymous_id)
    )
    settle(page, shop, 1)
    assert fired == []
    assert shop.pixel_hits == []
    context.close()


@pytest.mark.browser
def test_a_gpc_visitors_page_never_fires_the_tag_nor_asks(
    chromium, live_server, shop, browser_site
):
    site, audience = browser_site
    person = make_person(site)
    join(audience, person)
    context = chromium.new_context()
    context.add_init_script(GPC_ON)
    asked = []
    context.on("request", lambda r: "/v1/audiences/" in r.url and asked.append(r.url))
    page, fired = load(
        context, shop.page_for(live_server, site, person.visitors.get().anonymous_id)
    )
    settle(page, shop, 1)
    assert fired == []
    assert shop.pixel_hits == [] and asked == []
    context.close()


@pytest.mark.browser
def test_the_pasted_loader_alone_fires_a_members_tag(chromium, live_server, shop, browser_site):
    """No tags.js on the page: the site's settings name it and reengage.js loads it."""
    from tracking.snippet import loader_html

    site, audience = browser_site
    person = make_person(site)
    join(audience, person)
    anonymous_id = person.visitors.get().anonymous_id
    shop.pages["/loader"] = (
        f"<!doctype html><title>shop</title>{loader_html(site, live_server.url)}"
    )
    context = chromium.new_context()
    # The visitor's browser already carries their id from an earlier visit.
    context.add_init_script(f"localStorage.setItem('rg_aid', '{anonymous_id}')")
    page = context.new_page()
    page.goto(f"{shop.url}/loader")
    settle(page, shop, 1)
    assert len(shop.pixel_hits) == 1
    context.close()
