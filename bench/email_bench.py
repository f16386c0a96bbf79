"""Email throughput of one worker process: rendered and handed to the backend.

    .venv/bin/python bench/email_bench.py [--emails 3000] [--pipeline 500]

Baseline: the marketer's template rendered alone (the sandboxed Django template,
nothing else). Measured: what the sender does per email — context, template,
products block, layout, CSS inlining, click-tracking links, text part, headers
checked, an AnymailMessage handed to Anymail's test backend
(`anymail.backends.test.EmailBackend`). Both in this process, same data.

`--pipeline N` also runs the whole send path against the database (claim
committed, load, suppression check, send, finish) for N queued messages on a
scratch site that is deleted afterwards; that number depends on PostgreSQL's
commit latency more than on Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reengage.settings")

import django

django.setup()

from django.core import mail  # noqa: E402
from django.core.mail import get_connection  # noqa: E402
from django.template import Context  # noqa: E402

from campaigns.email import (  # noqa: E402
    composing,
    sending,
)
from campaigns.email.rendering import (  # noqa: E402
    SAMPLE_TRIGGER,
    compiled,
    links_for,
    render_email,
    template_context,
)
from campaigns.models import (  # noqa: E402
    Campaign,
    EmailSettings,
    EmailTemplate,
    Enrollment,
    Message,
    Step,
)
from tracking.models import Profile, Site  # noqa: E402

HTML = """
<h1>{{ first_name|default:"Hello" }}, you left something behind</h1>
<p>Your cart at {{ site_name }} is still waiting{% if value %} — {{ value }} {{ currency }}{% endif %}.</p>
{{ products_block }}
{% if promo_code %}<p>Use <strong>{{ promo_code }}</strong> for 10% off today.</p>{% endif %}
<p><a href="{{ cart_url }}" style="background:#18181b;color:#fff;padding:12px 20px">Back to my cart</a></p>
<p>Questions? <a href="https://shop.example.com/help">We are here to help</a>.</p>
"""


def fixtures():
    site = Site(pk=1, name="Bench Shop", postal_address="1 Market Street, Leeds")
    template = EmailTemplate(
        pk=1, site=site, name="Cart", subject="{{ first_name }}, your cart is waiting",
        preheader="Still thinking it over?", html=HTML, from_name="Shop",
        from_email="hello@shop.example.com",
    )  # fmt: skip
    campaign = Campaign(pk=1, site=site, name="Abandoned cart")
    step = Step(pk=1, campaign=campaign, template=template)
    messages = []
    for i in range(100):
        profile = Profile(pk=i + 1, site=site, email=f"p{i}@example.com",
                          traits={"first_name": f"Person{i}"}, consent={"email": True})  # fmt: skip
        enrollment = Enrollment(pk=i + 1, trigger_properties=SAMPLE_TRIGGER)
        message = Message(
            pk=i + 1, site=site, campaign=campaign, step=step, profile=profile,
            enrollment=enrollment, template=template, to_email=profile.email,
        )  # fmt: skip
        messages.append(message)
    return template, messages, EmailSettings(site=site)


class Timer:
    """Wall-clock and this process's CPU time: on a shared, busy machine the CPU rate
    says what one worker process does with a core of its own."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rates(self, n: int) -> tuple[float, float]:
        return n / self.wall, n / self.cpu


def bench_render_alone(template, messages, settings_, n: int) -> float:
    body = compiled(template).html
    contexts = [
        Context(template_context(composing.email_data(m, settings_, 1), links_for(m.pk)))
        for m in messages
    ]
    with Timer() as timer:
        for i in range(n):
            body.render(contexts[i % len(contexts)])
    return timer.rates(n)


def bench_send(template, messages, settings_, n: int) -> float:
    backend = get_connection("anymail.backends.test.EmailBackend")
    with Timer() as timer:
        for i in range(n):
            message = messages[i % len(messages)]
            rendered = render_email(template, composing.email_data(message, settings_, template.pk))
            composing.build_email(message, template, rendered, settings_, backend).send()
            if len(mail.outbox) >= 1000:
                mail.outbox.clear()
    mail.outbox.clear()
    return timer.rates(n)


def bench_pipeline(n: int) -> float:
    from django.utils import timezone

    now = timezone.now()
    site = Site.objects.create(name="email bench (scratch)", postal_address="1 Market Street")
    try:
        EmailSettings.objects.create(site=site, sends_per_minute=10**9)
        template = EmailTemplate.objects.create(
            site=site, name="Cart", subject="{{ first_name }}, your cart", html=HTML,
            from_email="hello@shop.example.com",
        )  # fmt: skip
        campaign = Campaign.objects.create(site=site, name="bench")
        step = Step.objects.create(campaign=campaign, template=template)
        profiles = Profile.objects.bulk_create(
            Profile(site=site, email=f"b{i}@example.com", traits={"first_name": f"B{i}"},
                    first_seen_at=now, last_seen_at=now)
            for i in range(n)
        )  # fmt: skip
        enrollments = Enrollment.objects.bulk_create(
            Enrollment(site=site, campaign=campaign, profile=p, enrolled_at=now,
                       last_activity_at=now, trigger_properties=SAMPLE_TRIGGER)
            for p in profiles
        )  # fmt: skip
        Message.objects.bulk_create(
            Message(site=site, campaign=campaign, step=step, enrollment=e, profile=e.profile,
                    template=template, to_email=e.profile.email, created_at=now)
            for e in enrollments
        )  # fmt: skip
        backend = get_connection("anymail.backends.test.EmailBackend")
        with Timer() as timer:
            report = sending.send_queued(backend=backend, limit=n, budget_seconds=600)
        mail.outbox.clear()
        assert report.counts.get("sent") == n, report.counts
        return timer.rates(n)
    finally:
        Message.objects.filter(site=site).delete()
        Step.objects.filter(campaign__site=site).delete()  # steps protect their template
        site.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emails", type=int, default=3000)
    parser.add_argument("--pipeline", type=int, default=0, metavar="N")
    args = parser.parse_args()
    template, messages, settings_ = fixtures()
    bench_send(template, messages, settings_, 200)  # warm up caches
    baseline = bench_render_alone(template, messages, settings_, args.emails)
    sent = bench_send(template, messages, settings_, args.emails)
    print(f"{'':34}{'wall':>10}{'CPU':>10}   (per second of one process)")
    print(f"{'template render alone (baseline)':34}{baseline[0]:10.0f}{baseline[1]:10.0f}")
    print(f"{'rendered + handed to backend':34}{sent[0]:10.0f}{sent[1]:10.0f}   target >= 500")
    print(f"{'ratio send / baseline':34}{sent[0] / baseline[0]:10.3f}{sent[1] / baseline[1]:10.3f}")
    if args.pipeline:
        full = bench_pipeline(args.pipeline)
        label = f"full send path, PostgreSQL ({args.pipeline})"
        print(f"{label:34}{full[0]:10.0f}{full[1]:10.0f}   (CPU: this process only)")


if __name__ == "__main__":
    main()
