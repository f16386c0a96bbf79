"""The loader a site owner pastes, and how the script it names is served."""

from __future__ import annotations

import json
import re

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

from tests.factories import make_site
from tracking.snippet import _js, loader_html

HASHED = re.compile(r"/static/reengage/reengage\.[0-9a-f]{12}\.js")


@pytest.fixture
def site(db):
    return make_site()


def test_the_loader_queues_calls_inits_records_the_page_and_loads_the_script_async(site):
    html = loader_html(site, "https://reengage.example.com/")
    script_line, noscript_line = html.split("\n")
    assert script_line.startswith(
        "<script>window.reengage=window.reengage||function(){"
        "(reengage.q=reengage.q||[]).push(arguments)};"
    )
    assert f'reengage(\'init\',"{site.write_key}",{{api:"https://reengage.example.com"}});' in html
    assert "reengage('page');</script>" in script_line
    assert script_line.endswith(
        '<script async src="https://reengage.example.com/static/reengage/reengage.js"></script>'
    )
    assert noscript_line == (
        f'<noscript><img src="https://reengage.example.com/v1/p.gif?k={site.write_key}" '
        'width="1" height="1" alt="" style="position:absolute"></noscript>'
    )


def test_what_the_loader_embeds_cannot_close_its_script_element():
    assert _js("</script><script>alert(1)") == '"\\u003c/script\\u003e\\u003cscript\\u003ealert(1)"'
    assert json.loads(_js("a&b</script>")) == "a&b</script>"


def test_createsite_prints_the_loader(db, capsys):
    call_command("createsite", "Shop", "--domain", "shop.example.com", "--json")
    created = json.loads(capsys.readouterr().out)
    assert f"reengage('init',\"{created['write_key']}\"" in created["snippet"]
    assert "/static/reengage/reengage.js" in created["snippet"]


@pytest.fixture
def production_static(tmp_path, settings):
    """collectstatic with the production storage (hashed names, gzip) into a temp dir."""
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STORAGES=storages, STATIC_ROOT=tmp_path):
        call_command("collectstatic", "--noinput", verbosity=0)
        yield tmp_path


def test_in_production_the_loader_names_the_hashed_script_which_is_cached_for_a_year(
    site, production_static
):
    html = loader_html(site, "https://reengage.example.com")
    path = HASHED.search(html).group()
    with override_settings(DEBUG=False):
        response = Client().get(path, HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    assert "max-age=315360000" in response["Cache-Control"]
    assert int(response["Content-Length"]) <= 4096


def test_a_hashed_name_from_an_older_release_redirects_to_the_current_script(
    site, production_static
):
    current = HASHED.search(loader_html(site, "https://reengage.example.com")).group()
    with override_settings(DEBUG=False):
        response = Client().get("/static/reengage/reengage.0123456789ab.js")
    assert response.status_code == 302
    assert response["Location"] == current
    assert response["Cache-Control"] == "public, max-age=3600"


def test_other_missing_static_files_are_not_redirected(db):
    assert Client().get("/static/reengage/reengage.js.map").status_code == 404
    assert Client().get("/static/reengage/other.0123456789ab.js").status_code == 404
