"""Official Segment and RudderStack SDKs, pointed at reengage, work unchanged."""

from __future__ import annotations

import pytest

from tests.factories import make_site
from tracking import flush
from tracking.models import Event, Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(redis_client):
    return make_site()


def stored(site) -> dict[str, Event]:
    flush.flush_once()
    return {e.name or e.type: e for e in Event.objects.filter(site=site)}


def send_with(client_class, site, host, *, gzip: bool) -> list[str]:
    errors: list[str] = []
    client = client_class(
        write_key=site.secret_key, host=host, gzip=gzip, sync_mode=True,
        on_error=lambda error, items: errors.append(str(error)),
    )  # fmt: skip
    client.identify("user-1", {"email": "ann@example.com", "plan": "pro"}, anonymous_id="anon-1")
    client.track("user-1", "Order Completed", {"order_id": "o-1", "revenue": 99.5},
                 anonymous_id="anon-1")  # fmt: skip
    client.page("user-1", "Docs", "Install", {"url": "https://shop.test/docs"})
    client.alias("anon-1", "user-1")
    client.flush()
    return errors


@pytest.mark.parametrize("gzip", [False, True])
def test_the_segment_python_sdk_lands_its_calls(live_server, site, gzip):
    from segment.analytics import Client

    assert send_with(Client, site, live_server.url, gzip=gzip) == []
    events = stored(site)
    assert set(events) == {"identify", "Order Completed", "Install", "alias"}
    assert events["Order Completed"].properties["revenue"] == 99.5
    assert events["Order Completed"].context["library"]["name"] == "analytics-python"
    person = Profile.objects.get(site=site, user_id="user-1")
    assert (person.email, person.email_verified) == ("ann@example.com", True)


def test_the_rudderstack_python_sdk_lands_its_calls(live_server, site):
    from rudderstack.analytics import Client

    assert send_with(Client, site, live_server.url, gzip=True) == []
    assert set(stored(site)) == {"identify", "Order Completed", "Install", "alias"}
