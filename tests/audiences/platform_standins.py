"""Stand-ins for the ad platforms at their HTTP boundary: threaded local servers that
check every request against each API's documented schema and answer as the
platform does (including 429 with Retry-After, 5xx and permanent 400 errors in the
platform's own error JSON).

A request that breaks the schema is answered the way the platform answers it and
recorded in `violations`; tests assert that list stays empty.

- Meta Graph API: Conversions API `/{v}/{pixel}/events`, Custom Audience
  `/{v}/{audience}/users` (POST adds, DELETE removes), `GET /{v}/{audience}`.
- Google: Data Manager `/v1/audienceMembers:ingest|remove`, and the OAuth token
  endpoint `/token` (a JWT-bearer grant signed with the service account's key).
- GA4 Measurement Protocol: `/mp/collect` and `/debug/mp/collect`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEX64 = re.compile(r"^[0-9a-f]{64}$")
FBP = re.compile(r"^fb\.[0-2]\.\d{10,13}\.\d+$")
FBC = re.compile(r"^fb\.[0-2]\.\d{10,13}\.\S+$")
GA_CLIENT = re.compile(r"^\d+\.\d+$")
GA_EVENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
GA_RESERVED = ("ga_", "google_", "firebase_")
DIGITS = re.compile(r"^\d+$")
USER_DATA_KEYS = {"em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country",
                  "external_id", "client_ip_address", "client_user_agent", "fbc", "fbp",
                  "subscription_id", "lead_id", "fb_login_id"}  # fmt: skip


class Fault:
    def __init__(self, status: int, body: dict | None, retry_after: str | None):
        self.status, self.body, self.retry_after = status, body, retry_after


class StandIn:
    """A threaded HTTP server; subclasses implement `handle(method, path, query,
    headers, body) -> (status, headers, json body or None)`."""

    def __init__(self, delay: float = 0.0, keep: bool = True):
        self.lock = threading.Lock()
        self.delay = delay
        # keep=False (benchmarks): count what was accepted instead of keeping it.
        self.keep = keep
        self.accepted = 0
        self.request_count = 0
        self.faults: list[Fault] = []
        self.requests: list[dict] = []  # every request answered, faults included
        self.violations: list[str] = []
        self.in_flight = 0  # requests arrived and not yet answered
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with stand_in.lock:
                    stand_in.in_flight += 1
                try:
                    if stand_in.delay:
                        time.sleep(stand_in.delay)
                    status, extra, answer = stand_in.dispatch(
                        self.command, url.path, query, headers, body
                    )
                finally:
                    with stand_in.lock:
                        stand_in.in_flight -= 1
                content = b"" if answer is None else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    if content:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a killed worker): it never hears back

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, count: int, status: int, *, body: dict | None = None,
                  retry_after: str | None = None) -> None:  # fmt: skip
        with self.lock:
            self.faults.extend(Fault(status, body, retry_after) for _ in range(count))

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    def dispatch(self, method, path, query, headers, body):
        if path == "/_stats":
            with self.lock:
                return 200, {}, {"requests": self.request_count, "accepted": self.accepted,
                                 "violations": self.violations[:20]}  # fmt: skip
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
            entry = {"method": method, "path": path, "query": query, "fault": fault is not None}
            self.request_count += 1
            if self.keep:
                self.requests.append(entry)
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return (
                fault.status,
                extra,
                fault.body if fault.body is not None else self.error_body(fault.status),
            )
        return self.handle(method, path, query, headers, body)

    def error_body(self, status: int) -> dict:
        raise NotImplementedError

    def handle(self, method, path, query, headers, body):
        raise NotImplementedError


def _form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


# --- Meta -------------------------------------------------------------------------


class MetaStandIn(StandIn):
    """Graph API. `events[pixel]` keeps every accepted event; `unique_events[pixel]`
    keeps one per event_id, as Meta deduplicates; `audiences[id]` is the set of
    (email hash, phone hash) rows currently in each customer list."""

    def __init__(self, *, token: str, version: str = "v25.0", now: float | None = None,
                 delay: float = 0.0, keep: bool = True):  # fmt: skip
        self.token, self.version, self.now = token, version, now
        self.events: dict[str, list[dict]] = {}
        self.unique_events: dict[str, dict[str, dict]] = {}
        self.audiences: dict[str, set[tuple[str, ...]]] = {}
        self.sessions: list[dict] = []
        super().__init__(delay, keep)

    @staticmethod
    def error(message: str, code: int = 100, subcode: int | None = None,
              kind: str = "OAuthException") -> dict:  # fmt: skip
        error = {"message": message, "type": kind, "code": code,
                 "fbtrace_id": uuid.uuid4().hex[:11]}  # fmt: skip
        if subcode:
            error["error_subcode"] = subcode
        return {"error": error}

    def error_body(self, status: int) -> dict:
        if status == 429:
            return self.error("(#17) User request limit reached", code=17)
        if status >= 500:
            return {"error": {"message": "An unknown error has occurred.", "type": "OAuthException",
                              "code": 1, "is_transient": True, "fbtrace_id": "standin"}}  # fmt: skip
        return self.error("Invalid parameter")

    def reject(self, text: str, status: int = 400):
        self.violation(text)
        return status, {}, self.error(f"Invalid parameter: {text}")

    def handle(self, method, path, query, headers, body):
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != self.version or not DIGITS.match(parts[1]):
            return self.reject(f"unknown path {path}", 404)
        params = dict(query)
        if method != "GET":
            if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                return self.reject("body is not form-encoded")
            params.update(_form(body))
        if params.get("access_token") != self.token:
            self.violation("wrong or missing access_token")
            return 400, {}, self.error("Invalid OAuth access token.", code=190)
        if len(parts) == 3 and parts[2] == "events" and method == "POST":
            return self.conversions(parts[1], params)
        if len(parts) == 3 and parts[2] == "users" and method in ("POST", "DELETE"):
            return self.users(parts[1], method, params)
        if len(parts) == 2 and method == "GET":
            return 200, {}, {"id": parts[1], "name": "Stand-in audience"}
        return self.reject(f"unsupported {method} {path}")

    def conversions(self, pixel: str, params: dict):
        data = _json(params.get("data", ""))
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            return self.reject("data must be a list of 1 to 1000 events")
        now = self.now or time.time()
        for event in data:
            problem = self.event_problem(event, now)
            if problem:
                return self.reject(problem)
        with self.lock:
            self.accepted += len(data)
            if not self.keep:
                return 200, {}, {"events_received": len(data), "messages": [],
                                 "fbtrace_id": "bench"}  # fmt: skip
            self.events.setdefault(pixel, []).extend(data)
            unique = self.unique_events.setdefault(pixel, {})
            for event in data:
                unique.setdefault(event["event_id"], event)
        return 200, {}, {"events_received": len(data), "messages": [],
                         "fbtrace_id": uuid.uuid4().hex[:11]}  # fmt: skip

    @staticmethod
    def event_problem(event, now: float) -> str:
        if not isinstance(event, dict):
            return "an event is not an object"
        for key in ("event_name", "event_time", "action_source", "user_data"):
            if key not in event:
                return f"event without {key}"
        if (
            not isinstance(event["event_time"], int)
            or not now - 7 * 86400 <= event["event_time"] <= now + 60
        ):
            return "event_time must be a Unix time within the last 7 days"
        if not isinstance(event.get("event_id"), str) or not event["event_id"]:
            return "event_id missing (events cannot be deduplicated)"
        user = event["user_data"]
        if event["action_source"] == "website":
            if not event.get("event_source_url", "").startswith("http"):
                return "website events need event_source_url"
            if not user.get("client_user_agent"):
                return "website events need user_data.client_user_agent"
        unknown = set(user) - USER_DATA_KEYS
        if unknown:
            return f"unknown user_data fields {sorted(unknown)}"
        if "fbp" in user and not FBP.match(user["fbp"]):
            return f"fbp {user['fbp']!r} is not fb.<subdomain>.<ms>.<random>"
        if "fbc" in user and not FBC.match(user["fbc"]):
            return f"fbc {user['fbc']!r} is not fb.<subdomain>.<ms>.<fbclid>"
        for key in ("em", "external_id", "ph"):
            if key in user and (not isinstance(user[key], list)
                                or not all(isinstance(v, str) and HEX64.match(v) for v in user[key])):  # fmt: skip
                return f"user_data.{key} must be a list of SHA-256 hex strings"
        if not any(user.get(k) for k in ("fbp", "fbc", "em", "external_id")):
            return "no customer information Meta could match"
        if "custom_data" in event and not isinstance(event["custom_data"], dict):
            return "custom_data must be an object"
        return ""

    def users(self, audience: str, method: str, params: dict):
        payload = _json(params.get("payload", ""))
        session = _json(params.get("session", "")) if "session" in params else None
        if not isinstance(payload, dict):
            return self.reject("payload must be a JSON object")
        schema, data = payload.get("schema"), payload.get("data")
        if isinstance(schema, str):
            if schema not in ("EMAIL_SHA256", "PHONE_SHA256"):
                return self.reject(f"schema {schema!r}")
            rows = [[v] for v in data or []]
            schema = [schema]
        elif isinstance(schema, list) and set(schema) <= {"EMAIL", "PHONE", "EXTERN_ID"}:
            rows = data
        else:
            return self.reject(f"schema {schema!r}")
        if not isinstance(rows, list) or not 1 <= len(rows) <= 10_000:
            return self.reject("data must hold 1 to 10,000 rows")
        for row in rows:
            if not isinstance(row, list) or len(row) != len(schema):
                return self.reject("each row needs one value per schema key")
            if not any(row) or not all(v == "" or HEX64.match(v) for v in row):
                return self.reject("values must be SHA-256 hex of normalised data")
        if session is not None:
            keys = {"session_id", "batch_seq", "last_batch_flag", "estimated_num_total"}
            if not isinstance(session, dict) or set(session) - keys or not {"session_id", "batch_seq", "last_batch_flag"} <= set(session):  # fmt: skip
                return self.reject(f"session {session!r}")
            if not isinstance(session["session_id"], int) or session["batch_seq"] < 1:
                return self.reject("session_id must be a number, batch_seq start at 1")
        with self.lock:
            members = self.audiences.setdefault(audience, set())
            for row in rows:
                (members.add if method == "POST" else members.discard)(tuple(row))
            self.sessions.append({"method": method, **(session or {}), "rows": len(rows)})
        return 200, {}, {"audience_id": audience,
                         "session_id": (session or {}).get("session_id", 0),
                         "num_received": len(rows), "num_invalid_entries": 0,
                         "invalid_entry_samples": {}}  # fmt: skip


# --- Google -----------------------------------------------------------------------


def new_service_account() -> tuple[dict, object]:
    """A service-account key file (as Google Cloud hands it out) and its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()  # fmt: skip
    account = {"type": "service_account", "project_id": "standin",
               "private_key_id": "k1", "private_key": pem,
               "client_email": "reengage@standin.iam.gserviceaccount.com",
               "token_uri": "https://oauth2.googleapis.com/token"}  # fmt: skip
    return account, key.public_key()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GoogleStandIn(StandIn):
    """Data Manager API and Google's OAuth token endpoint. `lists[audience id]` is the
    set of hashed identifiers currently in each Customer Match list."""

    ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_ADVERTISER", "DISPLAY_VIDEO_PARTNER",
                     "DATA_PARTNER"}  # fmt: skip
    CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED", "CONSENT_STATUS_UNSPECIFIED"}

    def __init__(self, *, public_key=None, static_token: str | None = None, delay: float = 0.0,
                 keep: bool = True):  # fmt: skip
        self.public_key = public_key
        self.tokens: set[str] = {static_token} if static_token else set()
        self.lists: dict[str, set[str]] = {}
        self.tokens_issued = 0
        super().__init__(delay, keep)

    @staticmethod
    def error(code: int, message: str, status: str) -> dict:
        return {"error": {"code": code, "message": message, "status": status}}

    def error_body(self, status: int) -> dict:
        if status == 429:
            return self.error(429, "Quota exceeded for quota metric 'IngestionMutateRequests"
                                   "PerMinutePerProject'.", "RESOURCE_EXHAUSTED")  # fmt: skip
        if status >= 500:
            return self.error(status, "The service is currently unavailable.", "UNAVAILABLE")
        return self.error(status, "Request contains an invalid argument.", "INVALID_ARGUMENT")

    def reject(self, text: str):
        self.violation(text)
        return 400, {}, self.error(400, text, "INVALID_ARGUMENT")

    def handle(self, method, path, query, headers, body):
        if path == "/token" and method == "POST":
            return self.token(_form(body))
        if method != "POST" or path not in ("/v1/audienceMembers:ingest",
                                            "/v1/audienceMembers:remove"):  # fmt: skip
            return self.reject(f"unknown {method} {path}")
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            self.violation("missing or unknown bearer token")
            return 401, {}, self.error(401, "Request had invalid authentication credentials.",
                                       "UNAUTHENTICATED")  # fmt: skip
        request = _json(body.decode())
        if not isinstance(request, dict):
            return self.reject("body is not a JSON object")
        return self.audience_members(path.endswith(":ingest"), request)

    def token(self, form: dict):
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            self.violation("grant_type")
            return 400, {}, {"error": "unsupported_grant_type"}
        try:
            head, claims, signature = form["assertion"].split(".")
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding

            self.public_key.verify(_unb64(signature), f"{head}.{claims}".encode(),
                                   padding.PKCS1v15(), hashes.SHA256())  # fmt: skip
            claims = json.loads(_unb64(claims))
        except Exception:  # any malformed assertion is an invalid grant
            self.violation("assertion does not verify")
            return (
                400,
                {},
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
            )
        if claims.get("scope") != "https://www.googleapis.com/auth/datamanager" or not claims.get(
            "iss"
        ):
            self.violation(f"claims {claims}")
            return 400, {}, {"error": "invalid_scope"}
        token = "ya29.standin-" + uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
            self.tokens_issued += 1
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def audience_members(self, ingest: bool, request: dict):
        destinations = request.get("destinations")
        if not isinstance(destinations, list) or not destinations:
            return self.reject("destinations is required")
        for d in destinations:
            account = d.get("operatingAccount") or {}
            if account.get("accountType") not in self.ACCOUNT_TYPES or not DIGITS.match(str(account.get("accountId", ""))):  # fmt: skip
                return self.reject(f"operatingAccount {account!r}")
            if not DIGITS.match(str(d.get("productDestinationId", ""))):
                return self.reject("productDestinationId is required")
            login = d.get("loginAccount")
            if login is not None and not DIGITS.match(str(login.get("accountId", ""))):
                return self.reject("loginAccount.accountId")
        if request.get("encoding") != "HEX":
            return self.reject("encoding must be HEX or BASE64 for hashed user data")
        members = request.get("audienceMembers")
        if not isinstance(members, list) or not 1 <= len(members) <= 10_000:
            return self.reject("audienceMembers: 1 to 10,000 per request")
        if ingest and (request.get("termsOfService") or {}).get(
            "customerMatchTermsOfServiceStatus") != "ACCEPTED":  # fmt: skip
            return self.reject("termsOfService.customerMatchTermsOfServiceStatus must be ACCEPTED")
        hashes = []
        for member in members:
            identifiers = (member.get("userData") or {}).get("userIdentifiers")
            if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= 10:
                return self.reject("userData.userIdentifiers: 1 to 10")
            for identifier in identifiers:
                if len(identifier) != 1 or next(iter(identifier)) not in ("emailAddress", "phoneNumber", "address"):  # fmt: skip
                    return self.reject(f"identifier {identifier!r}")
                value = next(iter(identifier.values()))
                if not isinstance(value, str) or not HEX64.match(value):
                    return self.reject("identifiers must be SHA-256 hex after normalisation")
                hashes.append(value)
            consent = member.get("consent") or request.get("consent")
            consent_ok = bool(consent) and not set(consent) - {"adUserData", "adPersonalization"}
            if ingest and not (consent_ok and set(consent.values()) <= self.CONSENT):
                return self.reject(f"consent {consent!r}")
        with self.lock:
            self.accepted += len(members)
            for d in destinations if self.keep else []:
                current = self.lists.setdefault(d["productDestinationId"], set())
                if ingest:
                    current.update(hashes)
                else:
                    current.difference_update(hashes)
        return 200, {}, {"requestId": str(uuid.uuid4())}


# --- GA4 ----------------------------------------------------------------------------


class GA4StandIn(StandIn):
    """Measurement Protocol: answers 204 to /mp/collect whatever it gets, as GA4 does
    (violations are recorded, not reported), and validationMessages on /debug."""

    def __init__(self, *, measurement_id: str, api_secret: str, delay: float = 0.0,
                 keep: bool = True):  # fmt: skip
        self.measurement_id, self.api_secret = measurement_id, api_secret
        self.events: list[tuple[str, dict]] = []  # (client id, event)
        self.event_ids: Counter = Counter()
        super().__init__(delay, keep)

    def error_body(self, status: int) -> dict | None:
        return None

    def problems(self, query: dict, payload) -> list[str]:
        found = []
        if query.get("measurement_id") != self.measurement_id:
            found.append("measurement_id")
        if query.get("api_secret") != self.api_secret:
            found.append("api_secret")
        if not isinstance(payload, dict):
            return [*found, "body is not a JSON object"]
        if not GA_CLIENT.match(str(payload.get("client_id", ""))):
            found.append(f"client_id {payload.get('client_id')!r}")
        consent = payload.get("consent")
        if consent is not None and (set(consent) - {"ad_user_data", "ad_personalization"}
                                    or not set(consent.values()) <= {"GRANTED", "DENIED"}):  # fmt: skip
            found.append(f"consent {consent!r}")
        events = payload.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= 25:
            return [*found, "events: 1 to 25 per request"]
        for event in events:
            name = event.get("name", "")
            if not GA_EVENT.match(name) or name.startswith(GA_RESERVED):
                found.append(f"event name {name!r}")
            params = event.get("params", {})
            if not isinstance(params, dict) or len(params) > 25:
                found.append("params: an object of at most 25")
        return found

    def handle(self, method, path, query, headers, body):
        payload = _json(body.decode())
        problems = self.problems(query, payload)
        if path == "/debug/mp/collect":
            return 200, {}, {"validationMessages": [{"description": p} for p in problems]}
        if path != "/mp/collect" or method != "POST":
            self.violation(f"unknown {method} {path}")
            return 404, {}, None
        for problem in problems:
            self.violation(problem)
        if not problems:
            with self.lock:
                self.accepted += len(payload["events"])
                for event in payload["events"] if self.keep else []:
                    self.events.append((payload["client_id"], event))
                    self.event_ids[event["params"].get("reengage_event_id")] += 1
        return 204, {}, None
