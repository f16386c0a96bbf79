"""The admin's "send a test to me" follows the ESP's limits like a real send: no
metadata for an ESP that takes none (Postal, MailerSend), or Anymail refuses it."""

import pytest
from anymail.utils import UNSET
from django.core import mail

from campaigns.admin.email import preview_data
from campaigns.email import sending
from tests.email.conftest import make_template
from tests.factories import make_site

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("send_metadata", "expected"), [(True, {"test": "1"}), (False, UNSET)])
def test_a_test_send_carries_metadata_only_where_the_esp_takes_it(
    settings, send_metadata, expected
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_SEND_METADATA = send_metadata
    template = make_template(make_site())
    sending.send_test(template, "me@shop.test", preview_data(template, None))
    (sent,) = mail.outbox
    assert sent.subject.startswith("[Test]")
    assert sent.metadata == expected
