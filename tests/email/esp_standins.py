"""Local stand-ins for ESPs' send APIs: real HTTP (and SMTP) servers on 127.0.0.1.

Each checks a request against what the ESP's API reference documents (path,
authentication, content type, required fields and their types, the limits the
ESP enforces) and answers like the ESP, so Anymail's real backends talk to it
through `requests` or boto3 exactly as they would to the ESP. A request that
does not fit is answered with the ESP's error status and kept in `errors`, so
the test can show what was wrong.

References (each ESP's API docs):
- Postmark: POST /email, X-Postmark-Server-Token, JSON; Tag is one string
  (≤ 1000 chars), Metadata ≤ 10 fields (names ≤ 20 chars, values ≤ 80 chars).
- Mailgun: POST /v3/<domain>/messages, HTTP Basic api:<key>, form fields
  from/to/subject/text/html, o:tag, h:<header>, v:<variable>.
- Brevo: POST /v3/smtp/email, api-key header, JSON sender/to/subject/
  htmlContent, headers, tags; answers 201 {"messageId": …}.
- SendGrid: POST /v3/mail/send, Authorization: Bearer, JSON personalizations/
  from/subject/content; categories ≤ 10 of ≤ 255 chars, custom_args string
  values under 10,000 bytes, no reserved headers; answers 202 with no body.
- Postal (self-hosted): POST /api/v1/send/message, X-Server-API-Key, JSON
  to (≤ 50)/from/subject/plain_body/html_body, headers, one tag string, no
  metadata field; answers {"status": "success", "data": {"message_id",
  "messages": {address: {"id", "token"}}}}.
- Amazon SES (API v2): POST /v2/email/outbound-emails (SendEmail), AWS
  Signature V4 for service "ses", JSON FromEmailAddress/Destination/Content.Raw;
  answers {"MessageId": …}. On the same endpoint, Amazon SNS's
  ConfirmSubscription (query API: POST / Action=ConfirmSubscription&TopicArn&Token,
  signed for service "sns"), which Anymail calls to accept a subscription.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import uuid
from email.message import Message as MimeMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class Refused(Exception):
    """The request does not fit the ESP's documented API."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def require(condition: bool, reason: str, status: int = 400) -> None:
    if not condition:
        raise Refused(status, reason)


class StandIn:
    """An HTTP server that hands each request to `handle(method, path, headers, body)`."""

    def __init__(self):
        self.requests: list[dict] = []  # the accepted ones, parsed
        self.errors: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, answer = standin.handle(self.path, headers, body)
                except Refused as refused:
                    standin.errors.append(f"{self.path}: {refused}")
                    status, answer = refused.status, standin.error_body(str(refused))
                content_type = "application/json"
                if isinstance(answer, tuple):  # (content type, bytes)
                    content_type, data = answer
                else:
                    data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def error_body(self, reason: str):
        return {"message": reason}

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, object]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json_body(headers: dict, body: bytes) -> dict:
    require(headers.get("content-type", "").startswith("application/json"), "not JSON")
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(400, "body is not valid JSON") from None
    require(isinstance(data, dict), "body is not a JSON object")
    return data


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class Postmark(StandIn):
    def __init__(self, token: str):
        self.token = token
        super().__init__()

    def error_body(self, reason):
        return {"ErrorCode": 300, "Message": reason}

    def handle(self, path, headers, body):
        require(path == "/email", f"unknown endpoint {path}", 404)
        require(headers.get("x-postmark-server-token") == self.token, "bad server token", 401)
        require(headers.get("accept") == "application/json", "Accept must be application/json")
        data = _json_body(headers, body)
        for field in ("From", "To"):
            require(isinstance(data.get(field), str) and data[field], f"{field} is required", 422)
        require("HtmlBody" in data or "TextBody" in data, "HtmlBody or TextBody required", 422)
        if "Tag" in data:
            require(isinstance(data["Tag"], str) and len(data["Tag"]) <= 1000, "Tag", 422)
        metadata = data.get("Metadata", {})
        require(isinstance(metadata, dict) and len(metadata) <= 10, "Metadata: ≤ 10 fields", 422)
        for key, value in metadata.items():
            require(len(key) <= 20 and isinstance(value, str) and len(value) <= 80, key, 422)
        for header in data.get("Headers", []):
            require(set(header) == {"Name", "Value"}, "Headers are {Name, Value}", 422)
        self.requests.append(data)
        message_id = str(uuid.uuid4())
        answer = {"To": data["To"], "SubmittedAt": "2026-03-02T10:00:00.0000000-05:00",
                  "MessageID": message_id, "ErrorCode": 0, "Message": "OK"}  # fmt: skip
        return 200, answer


def parse_form(headers: dict, body: bytes) -> dict[str, list[str]]:
    """An HTML form body, urlencoded or multipart/form-data, as {field: [values]}."""
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return parse_qs(body.decode(), keep_blank_values=True)
    require(content_type.startswith("multipart/form-data"), f"not a form: {content_type}")
    mime = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    fields: dict[str, list[str]] = {}
    for part in mime.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields.setdefault(name, []).append(part.get_content())
    return fields


class Mailgun(StandIn):
    def __init__(self, api_key: str, domain: str):
        self.api_key, self.domain = api_key, domain
        super().__init__()

    def handle(self, path, headers, body):
        require(path == f"/v3/{self.domain}/messages", f"unknown endpoint {path}", 404)
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        require(headers.get("authorization") == expected, "Forbidden", 401)
        form = parse_form(headers, body)
        for field in ("from", "to"):
            require(bool(form.get(field)), f"'{field}' parameter is missing")
        require(bool(form.get("text") or form.get("html")), "Need at least one of 'text' or 'html'")
        self.requests.append(form)
        return 200, {"id": f"<{uuid.uuid4().hex}@{self.domain}>", "message": "Queued. Thank you."}


class Brevo(StandIn):
    def __init__(self, api_key: str):
        self.api_key = api_key
        super().__init__()

    def error_body(self, reason):
        return {"code": "invalid_parameter", "message": reason}

    def handle(self, path, headers, body):
        require(path == "/v3/smtp/email", f"unknown endpoint {path}", 404)
        require(headers.get("api-key") == self.api_key, "Key not found", 401)
        data = _json_body(headers, body)
        sender = data.get("sender")
        require(isinstance(sender, dict) and "email" in sender, "sender.email is missing")
        to = data.get("to")
        require(isinstance(to, list) and to and all("email" in r for r in to), "to is missing")
        require("htmlContent" in data or "textContent" in data, "htmlContent is missing")
        require(isinstance(data.get("subject"), str), "subject is missing")
        require(_strings(data.get("tags", [])), "tags must be a list of strings")
        headers_sent = data.get("headers", {})
        require(isinstance(headers_sent, dict), "headers must be an object")
        self.requests.append(data)
        return 201, {"messageId": f"<{uuid.uuid4().hex}@smtp-relay.mailin.fr>"}


class Postal(StandIn):
    FIELDS = {"to", "cc", "bcc", "from", "sender", "subject", "tag", "reply_to", "plain_body",
              "html_body", "attachments", "headers", "bounce"}  # fmt: skip

    def __init__(self, api_key: str):
        self.api_key = api_key
        self.next_id = 1531
        super().__init__()

    def error_body(self, reason):
        return {"status": "parameter-error", "data": {"message": reason}}

    def handle(self, path, headers, body):
        require(path == "/api/v1/send/message", f"unknown endpoint {path}", 404)
        require(headers.get("x-server-api-key") == self.api_key, "InvalidServerAPIKey", 403)
        data = _json_body(headers, body)
        require(not set(data) - self.FIELDS, f"unknown fields {sorted(set(data) - self.FIELDS)}")
        require(_strings(data.get("to")) and 0 < len(data["to"]) <= 50, "to: 1 to 50 addresses")
        require(isinstance(data.get("from"), str), "from is required")
        require("plain_body" in data or "html_body" in data, "plain_body or html_body")
        require(isinstance(data.get("tag", ""), str), "tag is one string")
        require(isinstance(data.get("headers", {}), dict), "headers must be an object")
        self.requests.append(data)
        messages = {}
        for address in data["to"]:
            messages[address] = {"id": self.next_id, "token": uuid.uuid4().hex[:12]}
            self.next_id += 1
        message_id = f"{uuid.uuid4()}@rp.postal.example.com"
        return 200, {"status": "success", "time": 0.02, "flags": {},
                     "data": {"message_id": message_id, "messages": messages}}  # fmt: skip


# "You may not overwrite the following reserved headers" (v3 Mail Send, headers).
SENDGRID_RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}  # fmt: skip


class SendGrid(StandIn):
    def __init__(self, api_key: str):
        self.api_key = api_key
        super().__init__()

    def error_body(self, reason):
        return {"errors": [{"message": reason, "field": None}]}

    def handle(self, path, headers, body):
        require(path == "/v3/mail/send", f"unknown endpoint {path}", 404)
        require(headers.get("authorization") == f"Bearer {self.api_key}", "unauthorized", 401)
        data = _json_body(headers, body)
        personalizations = data.get("personalizations")
        require(isinstance(personalizations, list) and personalizations, "personalizations")
        for p in personalizations:
            require(isinstance(p.get("to"), list) and p["to"], "personalizations.to")
            for value in p.get("custom_args", {}).values():
                require(isinstance(value, str), "custom_args values must be strings")
        require(isinstance(data.get("from"), dict) and "email" in data["from"], "from.email")
        content = data.get("content", [])
        require(isinstance(content, list) and content, "content is required")
        if len(content) > 1:
            require(content[0]["type"] == "text/plain", "text/plain must come first")
        categories = data.get("categories", [])
        require(_strings(categories) and len(categories) <= 10, "categories: ≤ 10 strings")
        require(all(len(c) <= 255 for c in categories), "categories: ≤ 255 characters")
        custom_args = data.get("custom_args", {})
        for value in custom_args.values():
            require(isinstance(value, str), "custom_args values must be strings")
        require(len(json.dumps(custom_args).encode()) < 10000, "custom_args: < 10000 bytes")
        headers_sent = data.get("headers", {})
        require(isinstance(headers_sent, dict), "headers must be an object")
        reserved = set(map(str.lower, headers_sent)) & SENDGRID_RESERVED_HEADERS
        require(not reserved, f"headers may not set reserved {sorted(reserved)}")
        self.requests.append(data)
        return 202, None


class AmazonSES(StandIn):
    """SESv2 SendEmail, with the AWS Signature V4 recomputed from the fake credentials."""

    def __init__(self, access_key: str, secret_key: str, region: str):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.confirmed: list[dict[str, list[str]]] = []  # SNS subscriptions confirmed
        super().__init__()

    def error_body(self, reason):
        return {"message": reason}

    def handle(self, path, headers, body):
        if path == "/":
            return self.confirm_subscription(headers, body)
        require(path == "/v2/email/outbound-emails", f"unknown endpoint {path}", 404)
        self.check_signature(path, headers, body, "ses")
        data = _json_body(headers, body)
        destination = data.get("Destination", {})
        require(_strings(destination.get("ToAddresses", [])), "Destination.ToAddresses")
        raw = data.get("Content", {}).get("Raw", {}).get("Data")
        require(isinstance(raw, str), "Content.Raw.Data (base64 MIME) is required")
        mime = email.message_from_bytes(base64.b64decode(raw), policy=email.policy.SMTP)
        require(bool(mime["From"] and mime["Subject"]), "the raw message needs From and Subject")
        for tag in data.get("EmailTags", []):
            require(set(tag) == {"Name", "Value"}, "EmailTags are {Name, Value}")
        self.requests.append({"params": data, "mime": mime})
        return 200, {"MessageId": f"0100018e{uuid.uuid4().hex}-000000"}

    def confirm_subscription(self, headers: dict, body: bytes):
        self.check_signature("/", headers, body, "sns")
        form = parse_form(headers, body)
        require(
            form.get("Action") == ["ConfirmSubscription"], f"unknown Action {form.get('Action')}"
        )
        require(form.get("Version") == ["2010-03-31"], "Version must be 2010-03-31")
        require(bool(form.get("TopicArn") and form.get("Token")), "TopicArn and Token are required")
        self.confirmed.append(form)
        xml = (
            '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<ConfirmSubscriptionResult><SubscriptionArn>{form['TopicArn'][0]}:{uuid.uuid4()}"
            "</SubscriptionArn></ConfirmSubscriptionResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</ConfirmSubscriptionResponse>"
        )
        return 200, ("text/xml", xml.encode())

    def check_signature(self, path: str, headers: dict, body: bytes, service_name: str) -> None:
        """AWS Signature Version 4, computed as AWS's docs describe it."""
        auth = headers.get("authorization", "")
        require(auth.startswith("AWS4-HMAC-SHA256 "), "missing SigV4 Authorization", 403)
        parts = dict(
            p.strip().split("=", 1) for p in auth.removeprefix("AWS4-HMAC-SHA256 ").split(",")
        )
        access_key, date, region, service, terminal = parts["Credential"].split("/")
        require(access_key == self.access_key, "The security token included is invalid", 403)
        require((region, service, terminal) == (self.region, service_name, "aws4_request"),
                f"credential scope {region}/{service} is not {self.region}/{service_name}",
                403)  # fmt: skip
        amz_date = headers.get("x-amz-date", "")
        require(amz_date.startswith(date), "X-Amz-Date does not match the credential date", 403)
        signed = parts["SignedHeaders"].split(";")
        require(
            "host" in signed and "x-amz-date" in signed, "host and x-amz-date must be signed", 403
        )
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical = "\n".join(
            ["POST", path, "", *(f"{h}:{' '.join(headers[h].split())}" for h in signed), "",
             parts["SignedHeaders"], payload_hash]
        )  # fmt: skip
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.secret_key).encode()
        for step in (date, region, service, "aws4_request"):
            key = hmac.new(key, step.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        require(hmac.compare_digest(expected, parts["Signature"]), "SignatureDoesNotMatch", 403)


class SMTPServer:
    """A real SMTP server (aiosmtpd) that requires AUTH LOGIN/PLAIN with one user."""

    def __init__(self, user: str, password: str):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[tuple[str, list[str], MimeMessage]] = []
        received = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                mime = email.message_from_bytes(envelope.content, policy=email.policy.SMTP)
                received.append((envelope.mail_from, list(envelope.rcpt_tos), mime))
                return "250 OK queued"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            return AuthResult(success=ok)

        with socket.socket() as probe:  # a free port: the controller checks it can connect
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator,
            auth_require_tls=False, auth_required=True,
        )  # fmt: skip
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
