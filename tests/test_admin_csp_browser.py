"""The admin works in a real Chromium under the Content-Security-Policy: no violation
is reported on the pages staff use, including the JavaScript widgets."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tests.browser import launch_chromium
from tests.factories import make_site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"

# Records violations before any of the page's own scripts run.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@pytest.fixture
def page():
    with launch_chromium() as browser:
        page = browser.new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        console = []
        page.on(
            "console",
            lambda message: (
                console.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.csp_console = console
        yield page


def violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations") + page.csp_console


def test_admin_pages_and_widgets_report_no_csp_violation(page, live_server, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    site = make_site()
    marketers = Group.objects.get(name="Marketers")

    page.goto(f"{live_server.url}/admin/login/")
    assert violations(page) == []
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    pages = [
        "/admin/",
        "/admin/tracking/site/",
        f"/admin/tracking/site/{site.id}/change/",
        "/admin/tracking/site/add/",
        f"/admin/tracking/site/{site.id}/install/",  # copy buttons and the live check
        f"/admin/auth/user/{admin.id}/change/",  # date/time shortcuts
        f"/admin/auth/group/{marketers.id}/change/",  # the two-list permission picker
        "/admin/otp_totp/totpdevice/add/",
        "/admin/two-factor/",
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        directives = [d.strip() for d in response.headers["content-security-policy"].split(";")]
        assert "script-src 'self'" in directives, path
        page.wait_for_load_state("load")
        assert violations(page) == [], path

    # The admin theme's own scripts run too: an app's box folds when its caption is clicked.
    page.goto(f"{live_server.url}/admin/")
    caption = page.locator(".app-tracking caption")
    box = caption.bounding_box()
    caption.click(position={"x": box["width"] - 12, "y": box["height"] / 2})
    assert "collapsed" in page.locator(".app-tracking").get_attribute("class")
    # The widgets' scripts really ran: the permission picker built its filter box.
    page.goto(f"{live_server.url}/admin/auth/group/{marketers.id}/change/")
    assert page.locator("#id_permissions_filter").count() == 1
    # The date shortcuts ("Today", calendar) were added next to the date fields.
    page.goto(f"{live_server.url}/admin/auth/user/{admin.id}/change/")
    assert page.locator(".datetimeshortcuts").count() >= 1
    # Enrolment shows its QR code (inline SVG) under the policy.
    page.goto(f"{live_server.url}/admin/two-factor/")
    page.click("input[value='Set up an authenticator']")
    page.wait_for_load_state("load")
    assert page.locator(".two-factor-qr svg").count() == 1
    assert violations(page) == []


def test_an_inline_script_would_be_reported(page, live_server):
    """The check above can fail: a page with an inline script reports a violation."""
    page.goto(f"{live_server.url}/admin/login/")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = 1'; document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None
    assert any(v.startswith("script-src") for v in violations(page))
