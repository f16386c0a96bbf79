"""The sandbox marketers' email templates run in.

The Django template language, through a dedicated `Engine` with no loaders and
an allowlist of tags and filters: nothing can load files (`include`, `extends`,
`ssi`), load libraries (`load`), dump the context (`debug`) or switch escaping
off (`autoescape`, `safe`). Refusals name the tag or filter, for the admin form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.template import Engine, Library, TemplateSyntaxError, defaultfilters
from django.template import defaulttags as django_tags

ALLOWED_TAGS = (
    "if", "for", "with", "firstof", "cycle", "resetcycle", "ifchanged", "comment",
    "spaceless", "now", "filter", "templatetag", "widthratio", "verbatim", "regroup",
)  # fmt: skip
ALLOWED_FILTERS = (
    "add", "capfirst", "cut", "date", "default", "default_if_none", "dictsort",
    "dictsortreversed", "divisibleby", "escape", "first", "floatformat", "force_escape",
    "iriencode", "join", "last", "length", "linebreaks", "linebreaksbr", "lower",
    "make_list", "pluralize", "slice", "slugify", "stringformat", "striptags", "time",
    "timesince", "timeuntil", "title", "truncatechars", "truncatechars_html",
    "truncatewords", "truncatewords_html", "upper", "urlencode", "wordcount", "yesno",
)  # fmt: skip
# Refused on purpose, named in the error so the marketer knows it is policy:
# load/include/extends/block/ssi/debug reach outside the context; autoescape/safe/
# safeseq would let a visitor's trait inject HTML; center/ljust/rjust/wordwrap take
# sizes that can blow up memory; url/csrf_token/querystring need a request.

register = Library()
for _name in ALLOWED_TAGS:
    register.tags[_name] = django_tags.register.tags[_name]
for _name in ALLOWED_FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]


class SandboxEngine(Engine):
    # Engine always prepends these; an empty list leaves only our allowlist.
    default_builtins: list[str] = []


ENGINE = SandboxEngine(
    dirs=[], app_dirs=False, loaders=[], libraries={}, builtins=["campaigns.email.sandbox"],
    autoescape=True, debug=False, string_if_invalid="",
)  # fmt: skip

TEMPLATE_PARTS = ("subject", "preheader", "html", "text")

_INVALID_TAG = re.compile(r"Invalid block tag on line (\d+): '([^']+)'")
_INVALID_FILTER = re.compile(r"Invalid filter: '([^']+)'")


class TemplateRefused(ValueError):
    """A template part does not compile in the sandbox; the message names the problem."""


def _explain(exc: TemplateSyntaxError) -> str:
    text = str(exc)
    if match := _INVALID_TAG.search(text):
        line, tag = match.groups()
        if tag.startswith("end") or tag in {"else", "elif", "empty"}:
            return f"Line {line}: unexpected {{% {tag} %}} (no matching opening tag)."
        return (
            f"Line {line}: the tag {{% {tag} %}} is not allowed in email templates. "
            f"Allowed tags: {', '.join(ALLOWED_TAGS)}."
        )
    if match := _INVALID_FILTER.search(text):
        return (
            f"The filter |{match.group(1)} is not allowed in email templates. "
            f"Allowed filters: {', '.join(ALLOWED_FILTERS)}."
        )
    return text


def compile_part(source: str):
    try:
        return ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateRefused(_explain(exc)) from None


@dataclass
class CompiledTemplate:
    subject: Any
    preheader: Any
    html: Any
    text: Any  # None when the text part is generated from the HTML
    has_style: bool = False  # the body brings its own <style> to inline


@lru_cache(maxsize=512)
def _compiled(template_id: int, version: str, subject: str, preheader: str, body: str, text: str):
    # Keyed by id and updated_at; the sources ride along so the cache never serves
    # an unsaved edit (preview) as the saved version.
    return CompiledTemplate(
        subject=compile_part(subject),
        preheader=compile_part(preheader),
        html=compile_part(body),
        text=compile_part(text) if text.strip() else None,
        has_style="<style" in body.lower(),
    )


def compiled(template) -> CompiledTemplate:
    return _compiled(
        template.pk or 0, str(template.updated_at), template.subject, template.preheader,
        template.html, template.text,
    )  # fmt: skip
