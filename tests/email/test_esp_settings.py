"""Email settings from the environment: Anymail's typed, defaults that fit the ESP,
and a start-up check for what the ESP would refuse.

Every case runs reengage/settings.py in a fresh process with only the variables
given (plus the database/Redis ones), as an operator's `.env` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest
from django.core.mail import get_connection
from django.test import override_settings

from reengage.env import anymail_settings
from tests.email.test_esp_from_environment import email_variable, settings_from_environment
from tests.test_settings import ROOT, run_manage

POSTMARK = "anymail.backends.postmark.EmailBackend"


def test_anymail_variables_arrive_as_the_numbers_booleans_and_objects_anymail_reads():
    settings = settings_from_environment(
        EMAIL_BACKEND=POSTMARK,
        ANYMAIL_POSTMARK_SERVER_TOKEN="12345",
        ANYMAIL_REQUESTS_TIMEOUT="30",
        ANYMAIL_IGNORE_UNSUPPORTED_FEATURES="false",
        ANYMAIL_DEBUG_API_REQUESTS="0",
        ANYMAIL_POSTMARK_USE_BULK_API="no",
        ANYMAIL_SEND_DEFAULTS='{"track_clicks": false, "tags": ["reengage"]}',
        ANYMAIL_POSTMARK_SEND_DEFAULTS='{"esp_extra": {"MessageStream": "broadcast"}}',
    )
    anymail = settings["ANYMAIL"]

    assert anymail["POSTMARK_SERVER_TOKEN"] == "12345"  # names and keys stay strings
    assert anymail["REQUESTS_TIMEOUT"] == 30.0
    assert anymail["IGNORE_UNSUPPORTED_FEATURES"] is False
    assert anymail["DEBUG_API_REQUESTS"] is False
    assert anymail["SEND_DEFAULTS"] == {"track_clicks": False, "tags": ["reengage"]}
    # Anymail's real backend takes them as such.
    with override_settings(EMAIL_BACKEND=POSTMARK, ANYMAIL=anymail):
        backend = get_connection()
    assert backend.timeout == 30.0
    assert backend.ignore_unsupported_features is False
    assert backend.use_bulk_api is False  # the string "no" would have been truthy
    assert backend.send_defaults == {
        "track_clicks": False,
        "tags": ["reengage"],
        "esp_extra": {"MessageStream": "broadcast"},
    }


def test_a_requests_timeout_can_be_a_connect_and_read_pair():
    assert anymail_settings({"ANYMAIL_REQUESTS_TIMEOUT": "3.05, 27"}) == {
        "REQUESTS_TIMEOUT": (3.05, 27.0)
    }


def test_variables_outside_anymail_are_not_taken():
    assert anymail_settings({"ANYMAILX": "1", "EMAIL_HOST": "smtp", "ANYMAIL_X": "y"}) == {"X": "y"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ANYMAIL_REQUESTS_TIMEOUT", "soon", "ANYMAIL_REQUESTS_TIMEOUT='soon' is not a timeout"),
        ("ANYMAIL_REQUESTS_TIMEOUT", "0", "ANYMAIL_REQUESTS_TIMEOUT='0' is not a timeout"),
        ("ANYMAIL_REQUESTS_TIMEOUT", "1,2,3", "ANYMAIL_REQUESTS_TIMEOUT='1,2,3' is not a timeout"),
        ("ANYMAIL_DEBUG_API_REQUESTS", "maybe", "ANYMAIL_DEBUG_API_REQUESTS='maybe' is not a boolean"),
        ("ANYMAIL_SEND_DEFAULTS", "{track", "ANYMAIL_SEND_DEFAULTS is not valid JSON"),
        ("ANYMAIL_AMAZON_SES_CLIENT_PARAMS", '["eu-west-1"]',
         "ANYMAIL_AMAZON_SES_CLIENT_PARAMS must be a JSON object"),
        ("ANYMAIL_AMAZON_SES_DOWNLOAD_CHUNK_SIZE", "big",
         "ANYMAIL_AMAZON_SES_DOWNLOAD_CHUNK_SIZE='big' is not a whole number"),
        ("EMAIL_SEND_METADATA", "sometimes", "EMAIL_SEND_METADATA='sometimes' is not a boolean"),
    ],
)  # fmt: skip
def test_a_malformed_email_variable_stops_start_up_with_a_line_naming_it(variable, value, message):
    result = run_manage("check", **{variable: value})

    assert result.returncode == 2
    assert result.stderr.startswith("reengage: configuration error:")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("backend", "extra", "max_tags", "metadata"),
    [
        (POSTMARK, {}, 1, True),
        ("anymail.backends.postal.EmailBackend", {}, 1, False),
        ("anymail.backends.mailersend.EmailBackend", {}, 3, False),
        ("anymail.backends.sparkpost.EmailBackend", {}, 1, True),
        ("anymail.backends.mailgun.EmailBackend", {}, 3, True),
        ("anymail.backends.brevo.EmailBackend", {}, 3, True),
        ("anymail.backends.amazon_ses.EmailBackend", {}, 3, True),
        ("anymail.backends.amazon_ses.EmailBackend",
         {"ANYMAIL_AMAZON_SES_MESSAGE_TAG_NAME": "campaign"}, 1, True),
        ("django.core.mail.backends.smtp.EmailBackend", {}, 3, True),
        ("campaigns.email.devmail.EmailBackend", {}, 3, True),
    ],
)  # fmt: skip
def test_tag_and_metadata_defaults_follow_the_chosen_esp(backend, extra, max_tags, metadata):
    settings = settings_from_environment(EMAIL_BACKEND=backend, **extra)

    assert (settings["EMAIL_MAX_TAGS"], settings["EMAIL_SEND_METADATA"]) == (max_tags, metadata)
    assert settings["checks"] == []


def check(**env: str) -> subprocess.CompletedProcess:
    """`manage.py check` with only these email variables."""
    base = {k: v for k, v in os.environ.items() if not email_variable(k)}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT,
        env={**base, "REENGAGE_EMBEDDED_SERVICES": "0", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_more_tags_than_postmark_takes_is_a_start_up_warning():
    result = check(EMAIL_BACKEND=POSTMARK, EMAIL_MAX_TAGS="3")

    assert result.returncode == 0  # a warning: the server still starts
    assert (
        "(reengage.W012) EMAIL_MAX_TAGS=3, but Postmark accepts at most 1 tag per email"
        in result.stderr
    )
    assert "HINT: set EMAIL_MAX_TAGS=1 or leave it unset" in result.stderr


def test_no_warning_when_anymail_is_told_to_drop_what_the_esp_cannot_take():
    result = check(
        EMAIL_BACKEND=POSTMARK, EMAIL_MAX_TAGS="3", ANYMAIL_IGNORE_UNSUPPORTED_FEATURES="1"
    )

    assert result.returncode == 0
    assert "reengage.W012" not in result.stderr


def test_metadata_for_an_esp_without_metadata_is_a_start_up_warning():
    result = check(EMAIL_BACKEND="anymail.backends.postal.EmailBackend", EMAIL_SEND_METADATA="1")

    assert "(reengage.W013) EMAIL_SEND_METADATA is on, but Postal does not support metadata" in (
        result.stderr
    )


def test_the_old_sendinblue_backend_is_flagged_with_its_brevo_replacement():
    result = check(EMAIL_BACKEND="anymail.backends.sendinblue.EmailBackend")

    assert "(reengage.W011)" in result.stderr
    assert "use anymail.backends.brevo.EmailBackend" in result.stderr


# --- Amazon SES without boto3 -------------------------------------------------------

# Runs manage.py in a process where `import boto3` fails, as on an install without
# the `ses` extra (boto3 is a dev dependency, so the test environment has it).
WITHOUT_BOTO3 = """
import runpy, sys
sys.modules["boto3"] = None
sys.argv = ["manage.py", *sys.argv[1:]]
runpy.run_path("manage.py", run_name="__main__")
"""


def without_boto3(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not email_variable(k)}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_BOTO3, *args], cwd=ROOT,
        env={**base, "REENGAGE_EMBEDDED_SERVICES": "0", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_amazon_ses_without_boto3_is_a_start_up_error_naming_the_extra():
    result = without_boto3("check", EMAIL_BACKEND="anymail.backends.amazon_ses.EmailBackend")

    assert result.returncode == 1
    assert "(reengage.E010) EMAIL_BACKEND is Amazon SES" in result.stderr
    assert "pip install 'reengage[ses]'" in result.stderr


def test_the_ses_webhook_without_boto3_answers_json_saying_what_to_install():
    post = (
        "from django.test import Client; import json;"
        "r = Client().post('/anymail/amazon_ses/tracking/', data='{}', content_type='text/plain',"
        " HTTP_AUTHORIZATION='Basic aG9va3M6cHc=');"
        "print('ANSWER=' + json.dumps([r.status_code, r['Content-Type'], r.json()]))"
    )
    result = without_boto3("shell", "-c", post, ANYMAIL_WEBHOOK_SECRET="hooks:pw")

    [line] = [x for x in result.stdout.splitlines() if x.startswith("ANSWER=")]
    status, content_type, body = json.loads(line.removeprefix("ANSWER="))
    assert (status, content_type) == (501, "application/json")
    assert "boto3" in body["error"] and "pip install 'reengage[ses]'" in body["error"]


def test_with_boto3_the_ses_webhook_is_anymails_own():
    post = (
        "from django.test import Client; r = Client().post('/anymail/amazon_ses/tracking/',"
        " data='{}', content_type='text/plain'); print('STATUS=%s' % r.status_code)"
    )
    result = run_manage("shell", "-c", post, ANYMAIL_WEBHOOK_SECRET="hooks:pw")

    # Anymail's SNS view asks for basic auth the way SNS expects: 401.
    assert "STATUS=401" in result.stdout


def test_the_ses_extra_installs_boto3_and_the_image_can_include_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [requirement] = pyproject["project"]["optional-dependencies"]["ses"]
    assert requirement.startswith("boto3")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ARG EXTRAS=""' in dockerfile
    [install] = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    # What the image's shell makes of the install line, with and without the build arg.
    command = install.removeprefix("RUN ").replace("pip install", "echo", 1)
    for extras, target in (("ses", ".[ses]"), ("", ".")):
        shown = subprocess.run(["sh", "-c", command], env={"EXTRAS": extras},
                               capture_output=True, text=True, check=True)  # fmt: skip
        assert shown.stdout.split()[-1] == target
