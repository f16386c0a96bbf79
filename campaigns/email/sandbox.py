"""The sandbox marketers' email templates run in.

The Django template language, through a dedicated `Engine` with no loaders and
an allowlist of tags and filters: nothing can load files (`include`, `extends`,
`ssi`), load libraries (`load`), dump the context (`debug`) or switch escaping
off (`autoescape`, `safe`). Refusals name the tag or filter, for the admin form.
"""

from __future__ import annotations

import contextvars
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.template import Engine, Library, TemplateSyntaxError, defaultfilters
from django.template import defaulttags as django_tags
from django.template.base import NodeList, TextNode, VariableNode
from django.utils.safestring import SafeString

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


class TemplateRefused(ValueError):
    """A template part does not compile in the sandbox; the message names the problem."""


class RenderLimitExceeded(TemplateRefused):
    """Rendering went past EMAIL_RENDER_MAX_BYTES or EMAIL_RENDER_MAX_SECONDS."""


# --- filters whose arguments or values set the size of their output -----------------
# stringformat:"20000000s" pads to 20 MB; floatformat:20000000 writes 20 million
# digits, and so does floatformat on "1e10000000" from a visitor's trait.
MAX_FORMAT_WIDTH = 200
MAX_FLOAT_DIGITS = 20
MAX_NUMBER_EXPONENT = 30
_WIDTHS = re.compile(r"\d+")


@register.filter(is_safe=True)
def stringformat(value, arg):
    widths = [int(n) for n in _WIDTHS.findall(str(arg))]
    if any(n > MAX_FORMAT_WIDTH for n in widths):
        raise RenderLimitExceeded(
            f"stringformat:{str(arg)[:20]!r} asks for more than {MAX_FORMAT_WIDTH} characters."
        )
    if "*" in str(arg):
        raise RenderLimitExceeded("stringformat with a * width is not allowed.")
    return defaultfilters.stringformat(value, arg)


@register.filter(is_safe=True)
def floatformat(value, arg=-1):
    digits = _WIDTHS.findall(str(arg))
    if digits and int(digits[0]) > MAX_FLOAT_DIGITS:
        raise RenderLimitExceeded(
            f"floatformat:{str(arg)[:20]!r} asks for more than {MAX_FLOAT_DIGITS} decimal places."
        )
    try:
        number = Decimal(str(value)[:100])
    except (InvalidOperation, ValueError):
        number = None
    if number is not None and number.is_finite() and abs(number.adjusted()) > MAX_NUMBER_EXPONENT:
        return ""  # a number no price or count reaches: not written out digit by digit
    return defaultfilters.floatformat(value, arg)


# --- the rendering budget ------------------------------------------------------------


class RenderBudget:
    """Output bytes and wall time one email's rendering may spend."""

    def __init__(self, max_bytes: int, max_seconds: float):
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.spent = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(
                f"Rendering took longer than EMAIL_RENDER_MAX_SECONDS ({self.max_seconds:g} s); "
                "look for loops inside loops."
            )

    def spend(self, size: int) -> None:
        self.spent += size
        if self.spent > self.max_bytes:
            raise RenderLimitExceeded(
                f"The email is larger than EMAIL_RENDER_MAX_BYTES ({self.max_bytes} bytes)."
            )


_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar(
    "email_render_budget", default=None
)


@contextmanager
def render_budget():
    """Every template part rendered inside shares one budget (settings
    EMAIL_RENDER_MAX_BYTES / EMAIL_RENDER_MAX_SECONDS); nested uses join the outer one."""
    if _BUDGET.get() is not None:
        yield _BUDGET.get()
        return
    budget = RenderBudget(settings.EMAIL_RENDER_MAX_BYTES, settings.EMAIL_RENDER_MAX_SECONDS)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


# The nodes whose output is charged to the budget (see _CountedLeaf).
LEAVES = (TextNode, VariableNode)


class _CountedLeaf:
    """A text or variable node whose output is charged to the budget: every byte an
    email holds comes from one of these (tags only arrange them)."""

    __slots__ = ("budget", "node")

    def __init__(self, node, budget: RenderBudget):
        self.node, self.budget = node, budget

    def render_annotated(self, context):
        output = self.node.render_annotated(context)
        self.budget.spend(len(output))
        return output

    def __getattr__(self, name):
        return getattr(self.node, name)


class BudgetedNodeList(NodeList):
    """Every walk over a node list (NodeList.render, and each iteration of {% for %},
    which loops over its `nodelist_loop`) checks the clock and counts leaf output, so a
    loop inside a loop stops at the limit instead of running for seconds."""

    def __iter__(self):
        budget = _BUDGET.get()
        if budget is None:
            yield from list.__iter__(self)
            return
        for node in list.__iter__(self):
            budget.check_time()
            yield _CountedLeaf(node, budget) if isinstance(node, LEAVES) else node

    def render(self, context):
        """NodeList.render over `__iter__`, without a generator and a wrapper per node
        (every node of every email goes through here)."""
        budget = _BUDGET.get()
        if budget is None:
            return super().render(context)
        parts = []
        for node in list.__iter__(self):
            budget.check_time()
            output = node.render_annotated(context)
            if isinstance(node, LEAVES):
                budget.spend(len(output))
            parts.append(output)
        return SafeString("".join(parts))


def _budget_nodelists(nodelist: NodeList) -> None:
    nodelist.__class__ = BudgetedNodeList
    for node in list.__iter__(nodelist):
        for value in vars(node).values():
            if isinstance(value, NodeList):
                _budget_nodelists(value)
        for _condition, child in getattr(node, "conditions_nodelists", ()):
            _budget_nodelists(child)


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
        template = ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateRefused(_explain(exc)) from None
    _budget_nodelists(template.nodelist)
    return template


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
