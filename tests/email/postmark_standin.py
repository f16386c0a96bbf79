"""A stand-in for Postmark's email API at the HTTP boundary, for tests and bench/.

It speaks the documented `POST /email` and `POST /email/batch`
(https://postmarkapp.com/developer/api/email-api): it checks the headers
(`X-Postmark-Server-Token`, JSON `Accept` and `Content-Type`), refuses bodies that are
not what Postmark takes — unknown or mistyped fields, a list `Tag`, no From/To, no
body — with Postmark's 422 `{"ErrorCode", "Message"}` naming the field, and answers
a good one after `latency` seconds with `{"To", "SubmittedAt", "MessageID",
"ErrorCode": 0, "Message": "OK"}`. It can answer some requests 429 with a
`Retry-After`, and it counts what it saw: requests, the most it had in flight at
once, and how many times each reengage message id (`Metadata.message_id`) arrived.

Run it in a thread (`PostmarkStandIn(...).start()`) or, for benchmarks, as its own
process (`python -m tests.email.postmark_standin --latency 0.05`), so it does not
share the sender's interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "standin-server-token"

# The fields of Postmark's "Send a single email" body, with their JSON types.
FIELDS: dict[str, type | tuple[type, ...]] = {
    "From": str, "To": str, "Cc": str, "Bcc": str, "Subject": str, "Tag": str,
    "HtmlBody": str, "TextBody": str, "ReplyTo": str, "Headers": list, "TrackOpens": bool,
    "TrackLinks": str, "Metadata": dict, "Attachments": list, "MessageStream": str,
    "InlineCss": bool,
}  # fmt: skip


def problems(body: object) -> str | None:
    """Why Postmark would refuse this one-email body (None: it would take it)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    for name, value in body.items():
        if name not in FIELDS:
            return f"unknown field '{name}'"
        if not isinstance(value, FIELDS[name]):
            return f"'{name}' must be a {FIELDS[name].__name__}"
    for name in ("From", "To"):
        if not body.get(name):
            return f"'{name}' is required"
    if not body.get("HtmlBody") and not body.get("TextBody"):
        return "provide 'HtmlBody' or 'TextBody'"
    for header in body.get("Headers", []):
        if not (isinstance(header, dict) and set(header) == {"Name", "Value"}):
            return "'Headers' must be a list of {Name, Value}"
    if not all(isinstance(v, str) for v in body.get("Metadata", {}).values()):
        return "'Metadata' values must be strings"
    return None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: many senders connect at once


class PostmarkStandIn:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        throttle_first: int = 0,
        throttle_every: int = 0,
        throttle_site: str | None = None,
        retry_after: str = "30",
        port: int = 0,
    ):
        self.latency = latency
        self.throttle_first = throttle_first  # answer the first N requests 429
        self.throttle_every = throttle_every  # and every Nth after that (0: never)
        self.retry_after = retry_after
        self.throttle_site = throttle_site  # throttle only this site's emails (Metadata.site)
        self.message_ids: dict[str, str] = {}  # Metadata.message_id → the MessageID answered
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.throttled = 0
        self.considered = 0
        self.accepted: Counter[str] = Counter()  # Metadata.message_id → times accepted
        self.refused: list[str] = []
        self.bodies: list[dict] = []
        self.server = Server(("127.0.0.1", port), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> PostmarkStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def should_throttle(self, body) -> bool:
        if self.throttle_site is not None:
            site = body.get("Metadata", {}).get("site") if isinstance(body, dict) else None
            if site != self.throttle_site:
                return False
        with self.lock:
            self.considered += 1
            number = self.considered
            throttle = number <= self.throttle_first or (
                bool(self.throttle_every) and number % self.throttle_every == 0
            )
            self.throttled += throttle
        return throttle

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real API
            # The headers and the body go out in two writes: with Nagle's algorithm the
            # second waits for the client's delayed ACK, 40 ms added to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def answer(self, status: int, body, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                # Not Postmark's: what a benchmark in another process reads back.
                if self.path == "/_standin/accepted":  # Metadata.message_id → [times, id]
                    with standin.lock:
                        accepted = {ours: [times, standin.message_ids.get(ours)]
                                    for ours, times in standin.accepted.items()}  # fmt: skip
                    return self.answer(200, accepted)
                if self.path != "/_standin/stats":
                    return self.answer(404, {"ErrorCode": 404, "Message": f"no {self.path}"})
                with standin.lock:
                    stats = {"requests": standin.requests, "max_in_flight": standin.max_in_flight,
                             "throttled": standin.throttled, "accepted": sum(standin.accepted.values()),
                             "refused": len(standin.refused)}  # fmt: skip
                return self.answer(200, stats)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with standin.lock:
                    standin.requests += 1
                    standin.in_flight += 1
                    standin.max_in_flight = max(standin.max_in_flight, standin.in_flight)
                try:
                    self.respond(raw)
                finally:
                    with standin.lock:
                        standin.in_flight -= 1

            def respond(self, raw: bytes) -> None:
                if self.headers.get("X-Postmark-Server-Token") != TOKEN:
                    return self.answer(
                        401, {"ErrorCode": 10, "Message": "Bad or missing API token"}
                    )
                if "application/json" not in (self.headers.get("Content-Type") or ""):
                    return self.answer(
                        415, {"ErrorCode": 402, "Message": "Content-Type must be JSON"}
                    )
                if "application/json" not in (self.headers.get("Accept") or ""):
                    return self.answer(406, {"ErrorCode": 402, "Message": "Accept must be JSON"})
                if self.path not in ("/email", "/email/batch"):
                    return self.answer(404, {"ErrorCode": 404, "Message": f"no {self.path}"})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self.answer(422, {"ErrorCode": 402, "Message": "Invalid JSON"})
                if standin.should_throttle(body):
                    # Answered at once: a rate limiter does not do the work first.
                    return self.answer(
                        429,
                        {"ErrorCode": 429, "Message": "Rate limit exceeded"},
                        {"Retry-After": standin.retry_after},
                    )
                if standin.latency:
                    time.sleep(standin.latency)
                batch = self.path == "/email/batch"
                emails = body if batch else [body]
                if batch and not isinstance(body, list):
                    return self.answer(422, {"ErrorCode": 402, "Message": "a batch is a list"})
                answers = []
                for email in emails:
                    problem = problems(email)
                    if problem:
                        with standin.lock:
                            standin.refused.append(problem)
                        if not batch:
                            return self.answer(422, {"ErrorCode": 300, "Message": problem})
                        answers.append({"ErrorCode": 300, "Message": problem})
                        continue
                    esp_id = str(uuid.uuid4())
                    ours = email.get("Metadata", {}).get("message_id", "")
                    with standin.lock:
                        standin.accepted[ours] += 1
                        standin.message_ids[ours] = esp_id
                        standin.bodies.append(email)
                    answers.append({
                        "To": email["To"],
                        "SubmittedAt": datetime.now(UTC).isoformat(),
                        "MessageID": esp_id,
                        "ErrorCode": 0,
                        "Message": "OK",
                    })  # fmt: skip
                return self.answer(200, answers if batch else answers[0])

        return Handler


def postmark_settings(url: str) -> dict:
    """The Django settings that point the real Anymail Postmark backend at `url`."""
    return {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL": {"POSTMARK_SERVER_TOKEN": TOKEN, "POSTMARK_API_URL": url},
        "EMAIL_MAX_TAGS": 1,  # Postmark takes one tag
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="A stand-in for Postmark's email API.")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    standin = PostmarkStandIn(
        latency=args.latency, throttle_every=args.throttle_every,
        retry_after=args.retry_after, port=args.port,
    )  # fmt: skip
    print(standin.url, flush=True)
    standin.server.serve_forever()


if __name__ == "__main__":
    main()
