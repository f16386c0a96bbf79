"""`GET /v1/p.gif`: the page view of a browser without JavaScript."""

from __future__ import annotations

import logging

import pytest

from tests.factories import make_site
from tracking import buffer, snippet
from tracking.flush import flush_until_empty
from tracking.keys import clear_key_cache
from tracking.models import Event

BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)


@pytest.fixture
def site(db, redis_client):
    clear_key_cache()
    return make_site(domains=["shop.test"])


def hit(client, params: dict, **headers):
    headers.setdefault("HTTP_USER_AGENT", BROWSER)
    headers.setdefault("HTTP_REFERER", "https://shop.test/")
    response = client.get("/v1/p.gif", params, **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response["Cache-Control"] == "no-store, max-age=0"
    assert response.content == snippet.GIF
    return response


def stored(site) -> list[Event]:
    flush_until_empty(budget_seconds=10)
    return list(Event.objects.filter(site=site))


def test_the_gif_is_a_43_byte_transparent_1x1():
    gif = snippet.GIF
    assert len(gif) == 43
    assert gif[:6] == b"GIF89a" and gif[6:10] == b"\x01\x00\x01\x00"
    assert b"\x21\xf9\x04\x01" in gif  # graphic control extension, transparent flag set
    assert gif.endswith(b";")


def test_it_records_a_page_view_with_the_given_url_and_ids(client, site):
    url = "https://shop.test/shoes?utm_source=news&utm_campaign=spring"
    params = {"k": site.write_key, "url": url, "aid": "visitor-1", "mid": "m-1", "title": "Shoes"}
    hit(client, params)

    [event] = stored(site)
    assert (event.type, event.anonymous_id, event.message_id) == ("page", "visitor-1", "m-1")
    assert event.properties["url"] == url
    assert event.properties["path"] == "/shoes"
    assert event.properties["title"] == "Shoes"
    assert event.context["campaign"] == {"source": "news", "name": "spring"}
    assert event.context["library"] == snippet.PIXEL_LIBRARY
    assert event.context["userAgent"] == BROWSER
    assert event.context["ip"] == "127.0.0.0"  # anonymised by ingest


def test_without_parameters_the_referer_is_the_url_and_the_ids_are_fresh(client, site):
    hit(client, {"k": site.write_key}, HTTP_REFERER="https://shop.test/cart")
    hit(client, {"k": site.write_key}, HTTP_REFERER="https://shop.test/cart")

    events = stored(site)
    assert [e.properties["url"] for e in events] == ["https://shop.test/cart"] * 2
    assert len({e.anonymous_id for e in events}) == 2
    assert len({e.message_id for e in events}) == 2


def test_a_repeated_message_id_is_stored_once(client, site):
    for _ in range(2):
        hit(client, {"k": site.write_key, "mid": "same", "aid": "v"})
    assert len(stored(site)) == 1


def test_gpc_records_nothing(client, site):
    hit(client, {"k": site.write_key, "aid": "v"}, HTTP_SEC_GPC="1")
    assert stored(site) == []


def test_an_unknown_key_answers_the_gif_records_nothing_and_is_logged(client, site, caplog):
    with caplog.at_level(logging.INFO, logger="tracking.snippet"):
        hit(client, {"k": "wk_nope"})
        hit(client, {})
    assert stored(site) == []
    assert "unknown write key 'wk_nope'" in caplog.text


def test_a_page_on_another_domain_records_nothing(client, site, caplog):
    with caplog.at_level(logging.INFO, logger="tracking.snippet"):
        hit(client, {"k": site.write_key}, HTTP_REFERER="https://copycat.test/")
    assert stored(site) == []
    assert "copycat.test is not an allowed domain" in caplog.text


def test_an_opt_in_site_records_nothing_since_no_one_could_consent(client, db, redis_client):
    site = make_site(domains=["shop.test"], consent_mode="opt-in")
    hit(client, {"k": site.write_key})
    assert stored(site) == []


def test_a_secret_key_in_a_pixel_is_refused(client, site, caplog):
    hit(client, {"k": site.secret_key})
    assert stored(site) == []
    assert "secret key in a pixel" in caplog.text


def test_a_bot_is_not_recorded(client, site):
    hit(
        client,
        {"k": site.write_key},
        HTTP_USER_AGENT="Googlebot/2.1 (+http://www.google.com/bot.html)",
    )
    assert stored(site) == []


def test_invalid_parameters_answer_the_gif_and_are_logged(client, site, caplog):
    with caplog.at_level(logging.INFO, logger="tracking.snippet"):
        hit(client, {"k": site.write_key, "aid": "x" * 300})
    assert stored(site) == []
    assert "body.anonymousId" in caplog.text


def test_when_storage_is_down_it_still_answers_the_gif_and_logs_the_loss(
    client, site, monkeypatch, caplog
):
    def down(*args, **kwargs):
        raise buffer.StorageUnavailable("redis and postgres are both unreachable")

    monkeypatch.setattr(buffer, "accept", down)
    hit(client, {"k": site.write_key})
    assert "page view lost" in caplog.text


def test_an_unexpected_error_still_answers_the_gif(client, site, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(snippet, "record", broken)
    hit(client, {"k": site.write_key})
    assert "could not record a page view" in caplog.text


def test_head_answers_the_gif_without_recording(client, site):
    response = client.head("/v1/p.gif", {"k": site.write_key}, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 200
    assert stored(site) == []


def test_post_is_not_allowed(client, site):
    assert client.post("/v1/p.gif", {"k": site.write_key}).status_code == 405
