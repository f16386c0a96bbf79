"""Google: Customer Match lists through the Data Manager API.

https://developers.google.com/data-manager/api/reference/rest/v1/audienceMembers/ingest
and …/audienceMembers/remove: POST {GOOGLE_DATAMANAGER_URL}/v1/audienceMembers:ingest
(or :remove) with `destinations` [{operatingAccount {accountType, accountId},
loginAccount?, productDestinationId}], `audienceMembers` (at most 10,000), each
{userData {userIdentifiers [{emailAddress}, {phoneNumber}]}, consent {adUserData,
adPersonalization}}, `encoding: HEX` and, for ingestion, `termsOfService`
{customerMatchTermsOfServiceStatus: ACCEPTED}. Emails are hashed as Google asks
(no whitespace at all, lower-cased, SHA-256 hex), phones in E.164 with "+".
Only people whose consent allows advertising use carry hashes (membership.MAY_HASH),
so both consent fields are CONSENT_GRANTED for every member sent.

Authentication: an OAuth access token, or a service-account key (the JSON file
Google Cloud gives), exchanged for an access token with a signed JWT (RFC 7523)
at GOOGLE_OAUTH_TOKEN_URL, scope https://www.googleapis.com/auth/datamanager.
The `google-ads-datamanager` SDK talks gRPC through its own transport, so it
cannot go through the one guarded outbound client; the REST requests are written out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse

from django.conf import settings

from campaigns.audiences.platforms import http
from campaigns.audiences.platforms.base import (
    Ids,
    PlatformAnswer,
    Request,
    compact,
    error_text,
    retry_after_seconds,
)
from campaigns.models import PlatformDestination

SCOPE = "https://www.googleapis.com/auth/datamanager"
GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}


class CredentialError(Exception):
    """The service-account JSON is unusable, or Google refused it."""


def parse_service_account(text: str) -> dict:
    """The fields of a service-account key file this module needs; raises ValueError
    naming what is missing (the admin shows it as a form error)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not valid JSON (paste the whole key file)") from None
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValueError('not a service-account key ("type" is not "service_account")')
    missing = [k for k in ("client_email", "private_key") if not data.get(k)]
    if missing:
        raise ValueError(f"the key file has no {', '.join(missing)}")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(data["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("private_key is not a PEM private key") from None
    return data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_assertion(account: dict, *, now: float, audience: str) -> str:
    """A JWT (RS256) asserting the service account, for the OAuth token endpoint."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    header = {"alg": "RS256", "typ": "JWT"}
    if account.get("private_key_id"):
        header["kid"] = account["private_key_id"]
    claims = {"iss": account["client_email"], "scope": SCOPE, "aud": audience,
              "iat": int(now), "exp": int(now) + 3600}  # fmt: skip
    signing_input = f"{_b64(compact(header))}.{_b64(compact(claims))}".encode()
    key = load_pem_private_key(account["private_key"].encode(), password=None)
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{_b64(signature)}"


_tokens: dict[str, tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def access_token(credential: str) -> str:
    """The bearer token: the credential itself, or one minted from a service-account
    key and cached in this process until a minute before it expires."""
    if not credential.lstrip().startswith("{"):
        return credential
    cache_key = hashlib.sha256(credential.encode()).hexdigest()
    with _tokens_lock:
        cached = _tokens.get(cache_key)
    if cached and cached[1] > time.time() + 60:
        return cached[0]
    account = parse_service_account(credential)
    url = settings.GOOGLE_OAUTH_TOKEN_URL
    body = urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": signed_assertion(account, now=time.time(), audience=url),
    }).encode()  # fmt: skip
    status, _, content = http.send(
        "POST", url, headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body, timeout=settings.AD_PLATFORM_TIMEOUT_SECONDS,
    )  # fmt: skip
    try:
        answer = json.loads(content)
        token, lifetime = answer["access_token"], float(answer.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError):
        raise CredentialError(
            f"Google's token endpoint answered {status}: {error_text(content, 300)}"
        ) from None
    with _tokens_lock:
        _tokens[cache_key] = (token, time.time() + lifetime)
    return token


def forget_token(credential: str) -> None:
    with _tokens_lock:
        _tokens.pop(hashlib.sha256(credential.encode()).hexdigest(), None)


def google_outcome(status, headers, body, now) -> PlatformAnswer:
    if status is not None and 200 <= status < 300:
        return PlatformAnswer(True, status, False)
    # 401: a minted token may have been revoked early; the next attempt mints anew.
    retryable = status is None or status in (401, 408, 429) or status >= 500
    return PlatformAnswer(False, status, retryable, error_text(body) or f"HTTP {status}",
                   retry_after_seconds(headers, now))  # fmt: skip


class GoogleCustomerMatch:
    kind = PlatformDestination.Kind.GOOGLE_AUDIENCE
    mixed_actions = False
    browser_preference = None

    @property
    def batch_size(self) -> int:
        return min(settings.GOOGLE_AUDIENCE_BATCH_SIZE, 10_000)

    def matchable(self, ids: Ids) -> bool:
        return bool(ids.email_sha256 or ids.phone_sha256)

    def destination(self, destination: PlatformDestination) -> dict:
        found: dict[str, object] = {
            "operatingAccount": {"accountType": destination.google_account_type,
                                 "accountId": destination.google_operating_account_id},
            "productDestinationId": destination.google_audience_id,
        }  # fmt: skip
        if destination.google_login_account_id:
            found["loginAccount"] = {"accountType": "GOOGLE_ADS",
                                     "accountId": destination.google_login_account_id}  # fmt: skip
        return found

    def member(self, ids: Ids, *, adding: bool) -> dict:
        identifiers = []
        if ids.email_sha256:
            identifiers.append({"emailAddress": ids.email_sha256})
        if ids.phone_sha256:
            identifiers.append({"phoneNumber": ids.phone_sha256})
        member: dict[str, object] = {"userData": {"userIdentifiers": identifiers}}
        if adding:
            member["consent"] = GRANTED
        return member

    def body(self, destination, members: list[dict], *, adding: bool, validate_only=False):
        payload: dict[str, object] = {
            "destinations": [self.destination(destination)],
            "audienceMembers": members,
            "encoding": "HEX",
        }
        if adding:
            payload["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
        if validate_only:
            payload["validateOnly"] = True
        return payload

    def url(self, adding: bool) -> str:
        verb = "ingest" if adding else "remove"
        return f"{settings.GOOGLE_DATAMANAGER_URL.rstrip('/')}/v1/audienceMembers:{verb}"

    def requests(self, destination, batch, items, now) -> list[Request]:
        if not items:
            return []
        adding = items[0].action == "add"
        members = [self.member(i.ids, adding=adding) for i in items]
        payload = self.body(destination, members, adding=adding)
        return [Request("POST", self.url(adding), payload, len(items))]

    def encode(self, destination, request: Request, now) -> None:
        request.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {access_token(destination.credential)}",
        }
        request.body = compact(request.payload)

    def outcome(self, status, headers, body, now) -> PlatformAnswer:
        return google_outcome(status, headers, body, now)

    def test_request(self, destination, now) -> Request:
        from campaigns.audiences.membership import hash_email

        member = self.member(Ids(email_sha256=hash_email("test@example.com")), adding=True)
        payload = self.body(destination, [member], adding=True, validate_only=True)
        return Request("POST", self.url(True), payload, 1)
