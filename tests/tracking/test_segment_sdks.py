"""Official Segment and RudderStack SDKs, pointed at reengage, work unchanged."""

from __future__ import annotations

import pytest
import redis as redis_lib
from django.conf import settings

from tests.factories import make_site
from tracking import buffer, flush
from tracking.models import Event, Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(redis_client):
    return make_site()


def stored(site) -> dict[str, Event]:
    flush.flush_once()
    return {e.name or e.type: e for e in Event.objects.filter(site=site)}


def send_with(client_class, site, host, *, gzip: bool, sync_mode: bool = True) -> list[str]:
    errors: list[str] = []
    client = client_class(
        write_key=site.secret_key, host=host, gzip=gzip, sync_mode=sync_mode,
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


@pytest.fixture
def lost_acknowledgement():
    """The next request whose events were buffered is answered 503 (tracking.buffer)."""
    buffer.LOST_ACKNOWLEDGEMENTS.count = 1
    yield buffer.LOST_ACKNOWLEDGEMENTS
    buffer.LOST_ACKNOWLEDGEMENTS.count = 0


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
def test_a_batch_the_python_sdk_retries_after_a_503_is_stored_once(
    live_server, site, sdk, lost_acknowledgement
):
    from rudderstack.analytics import Client as RudderClient
    from segment.analytics import Client as SegmentClient

    # Sync mode posts once and never retries: the background consumer is what retries.
    client_class = SegmentClient if sdk == "segment" else RudderClient
    assert send_with(client_class, site, live_server.url, gzip=True, sync_mode=False) == []
    assert lost_acknowledgement.count == 0, "no request was answered 503"
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    buffered = sum(int(fields[b"n"]) for _, fields in client.xrange(buffer.STREAM))
    assert buffered > 4, "the SDK did not resend the batch answered 503"
    assert set(stored(site)) == {"identify", "Order Completed", "Install", "alias"}
    assert Event.objects.filter(site=site).count() == 4
