"""Admin login throttling (django-axes): per username and client IP, behind the proxy."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
LIMIT = 5


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # Every login hashes the password; the production hasher would make this file slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "alice", password=PASSWORD, is_staff=True, is_superuser=True
    )


def login(client, password, username="alice", **headers):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        **headers,
    )


def fail_until_locked(client, **headers):
    for attempt in range(LIMIT):
        response = login(client, f"wrong-{attempt}", **headers)
        if attempt < LIMIT - 1:
            assert response.status_code == 200, attempt  # the form again, with its error
            assert "Please enter the correct username and password" in response.text
    return response


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_the_fifth_bad_password_locks_the_username_out_from_that_ip(client, staff):
    response = fail_until_locked(client, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429
    assert "Too many failed logins" in response.text


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_a_good_password_is_refused_while_locked_out_with_a_clear_message(client, staff):
    fail_until_locked(client, REMOTE_ADDR="203.0.113.7")
    response = login(client, PASSWORD, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429
    assert "Login is locked for “alice” from this address after 5 failed attempts" in response.text
    assert "Try again in 0:15:00" in response.text
    assert "_auth_user_id" not in client.session


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_the_same_username_from_another_ip_is_unaffected(client, staff):
    fail_until_locked(client, REMOTE_ADDR="203.0.113.7")
    response = login(client, PASSWORD, REMOTE_ADDR="198.51.100.20")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


@override_settings(AXES_FAILURE_LIMIT=LIMIT)
def test_fewer_failures_than_the_limit_do_not_lock_and_a_success_resets_them(client, staff):
    for attempt in range(LIMIT - 1):
        login(client, f"wrong-{attempt}", REMOTE_ADDR="203.0.113.7")
    assert login(client, PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 302
    client.logout()
    for attempt in range(LIMIT - 1):
        assert login(client, f"again-{attempt}", REMOTE_ADDR="203.0.113.7").status_code == 200
    assert login(client, PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 302


@override_settings(
    AXES_FAILURE_LIMIT=LIMIT, TRUSTED_PROXY_HEADER="HTTP_X_FORWARDED_FOR", TRUSTED_PROXY_COUNT=1
)
def test_behind_the_proxy_the_client_ip_is_the_one_the_proxy_appended(client, staff):
    proxy = "10.0.0.2"
    # The attacker forges a new leftmost hop every time; the proxy appends the real address.
    for attempt in range(LIMIT):
        response = login(
            client, f"wrong-{attempt}", REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{attempt}, 203.0.113.7",
        )  # fmt: skip
    assert response.status_code == 429
    locked = login(client, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429
    # Everyone else comes through the same proxy address and is not locked out.
    other = login(client, PASSWORD, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert other.status_code == 302


def test_lockouts_are_recorded_for_the_admin_and_reset_commands(client, staff):
    from axes.models import AccessAttempt

    with override_settings(AXES_FAILURE_LIMIT=LIMIT):
        fail_until_locked(client, REMOTE_ADDR="203.0.113.7")
    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.ip_address == "203.0.113.7"
    assert attempt.failures_since_start == LIMIT
