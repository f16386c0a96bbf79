"""Optional TOTP two-factor for the admin (django-otp), and `manage.py enroll_totp`."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "alice", password=PASSWORD, is_staff=True, is_superuser=True
    )


def code_for(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code an authenticator app shows now, computed from the device's key."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def enrolled(user, *, confirmed: bool = True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=confirmed)


def login(client, *, password=PASSWORD, code=""):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "alice", "password": password, "otp_token": code},
    )


def test_staff_without_a_device_log_in_with_their_password_alone(client, staff):
    page = client.get("/admin/login/").text
    assert "Two-factor code" in page
    assert login(client).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_staff_with_a_device_must_give_a_code(client, staff):
    enrolled(staff)
    response = login(client)
    assert response.status_code == 200
    assert "Enter the 6-digit code from your authenticator app." in response.text
    assert "_auth_user_id" not in client.session


def test_a_wrong_code_is_refused(client, staff):
    device = enrolled(staff)
    wrong = code_for(device, steps_ahead=100)
    response = login(client, code=wrong)
    assert response.status_code == 200
    assert "That two-factor code is wrong or expired" in response.text
    assert client.get("/admin/").status_code == 302


def test_the_current_code_lets_staff_in(client, staff):
    device = enrolled(staff)
    response = login(client, code=code_for(device))
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_code_cannot_be_used_twice(client, staff):
    device = enrolled(staff)
    code = code_for(device)
    assert login(client, code=code).status_code == 302
    client.logout()
    assert login(client, code=code).status_code == 200


def test_a_password_only_session_does_not_reach_the_admin_once_a_device_is_confirmed(client, staff):
    assert login(client).status_code == 302
    enrolled(staff)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "log in again with its two-factor code" in client.get(response["Location"]).text


def test_an_unconfirmed_device_does_not_ask_for_a_code(client, staff):
    enrolled(staff, confirmed=False)
    assert login(client).status_code == 302


def test_admin_require_2fa_refuses_staff_without_a_device_and_names_the_command(
    client, staff, settings
):
    settings.ADMIN_REQUIRE_2FA = True
    response = login(client)
    assert response.status_code == 200
    assert "manage.py enroll_totp alice" in response.text
    assert "_auth_user_id" not in client.session


def test_admin_require_2fa_refuses_a_forced_login_without_a_device(client, staff, settings):
    settings.ADMIN_REQUIRE_2FA = True
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302


def test_enroll_totp_prints_a_uri_and_a_real_code_confirms_the_device(staff, capsys):
    call_command("enroll_totp", "alice")
    out = capsys.readouterr().out
    uri = next(line for line in out.splitlines() if line.startswith("otpauth://totp/"))
    query = parse_qs(urlsplit(uri).query)
    assert query["issuer"] == ["reengage"]
    device = TOTPDevice.objects.get(user=staff)
    assert not device.confirmed
    import base64

    assert base64.b32decode(query["secret"][0]) == device.bin_key

    call_command("enroll_totp", "alice", "--confirm", code_for(device))
    device.refresh_from_db()
    assert device.confirmed
    assert "two-factor is on" in capsys.readouterr().out


def test_enroll_totp_refuses_a_wrong_code_and_keeps_the_device_unconfirmed(staff):
    call_command("enroll_totp", "alice")
    device = TOTPDevice.objects.get(user=staff)
    with pytest.raises(CommandError, match="does not match"):
        call_command("enroll_totp", "alice", "--confirm", code_for(device, steps_ahead=100))
    device.refresh_from_db()
    assert not device.confirmed


def test_enroll_totp_refuses_non_staff_and_unknown_users(django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD)
    with pytest.raises(CommandError, match="not staff"):
        call_command("enroll_totp", "bob")
    with pytest.raises(CommandError, match="no user 'carol'"):
        call_command("enroll_totp", "carol")


def test_enroll_totp_confirm_without_an_enrolment_says_what_to_run(staff):
    with pytest.raises(
        CommandError,
        match=r"no enrolment waiting: start one first \(`manage\.py enroll_totp alice`\)",
    ):
        call_command("enroll_totp", "alice", "--confirm", "123456")


def test_confirming_a_new_authenticator_replaces_the_old_one(client, staff):
    old = enrolled(staff)
    call_command("enroll_totp", "alice")
    new = TOTPDevice.objects.get(user=staff, confirmed=False)
    call_command("enroll_totp", "alice", "--confirm", code_for(new))
    assert list(TOTPDevice.objects.filter(user=staff).values_list("id", "confirmed")) == [
        (new.id, True)
    ]
    assert not TOTPDevice.objects.filter(id=old.id).exists()
    # The confirming code is spent; the next one (within the device's tolerance) works.
    assert login(client, code=code_for(new, steps_ahead=1)).status_code == 302


# --- the admin's "Two-factor" page: staff enrol themselves ---------------------------


def test_staff_enrol_themselves_on_the_two_factor_page(client, staff):
    assert login(client).status_code == 302
    page = client.get("/admin/two-factor/")
    assert "Two-factor is <strong>off</strong>" in page.text
    assert client.post("/admin/two-factor/", {"action": "start"}).status_code == 302

    page = client.get("/admin/two-factor/")
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    assert "<svg" in page.text
    secret = page.text.split("Type this key into the app: <code>")[1].split("</code>")[0]
    import base64

    typed = secret.replace(" ", "")
    assert base64.b32decode(typed + "=" * (-len(typed) % 8)) == device.bin_key

    response = client.post("/admin/two-factor/", {"code": code_for(device)})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    device.refresh_from_db()
    assert device.confirmed
    # The session that proved the device stays in; a new login needs a code.
    assert client.get("/admin/").status_code == 200
    client.logout()
    assert login(client).status_code == 200
    assert login(client, code=code_for(device, steps_ahead=1)).status_code == 302


def test_a_wrong_code_on_the_two_factor_page_leaves_two_factor_off(client, staff):
    client.force_login(staff)
    client.post("/admin/two-factor/", {"action": "start"})
    device = TOTPDevice.objects.get(user=staff)
    response = client.post("/admin/two-factor/", {"code": code_for(device, steps_ahead=100)})
    assert response.status_code == 200
    assert "that code does not match" in response.text
    device.refresh_from_db()
    assert not device.confirmed


def test_a_new_authenticator_replaces_the_old_one_only_once_confirmed(client, staff):
    old = enrolled(staff)
    assert login(client, code=code_for(old)).status_code == 302
    page = client.get("/admin/two-factor/").text
    assert "Two-factor is <strong>on</strong>" in page
    client.post("/admin/two-factor/", {"action": "start"})
    assert TOTPDevice.objects.filter(id=old.id, confirmed=True).exists()
    new = TOTPDevice.objects.get(user=staff, confirmed=False)
    client.post("/admin/two-factor/", {"code": code_for(new)})
    assert list(TOTPDevice.objects.filter(user=staff).values_list("id", flat=True)) == [new.id]


def test_the_two_factor_page_needs_an_admin_session(client, staff, settings):
    assert client.get("/admin/two-factor/").status_code == 302
    # With 2FA required, a password-only session cannot enrol a device of its own.
    settings.ADMIN_REQUIRE_2FA = True
    client.force_login(staff)
    response = client.post("/admin/two-factor/", {"action": "start"})
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not TOTPDevice.objects.filter(user=staff).exists()


def test_the_admin_links_to_the_two_factor_page(client, staff):
    client.force_login(staff)
    assert 'href="/admin/two-factor/"' in client.get("/admin/").text
