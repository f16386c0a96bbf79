"""Trigger and audience conditions: validation (for the admin) and compilation to SQL.

A *property condition* is `{"property": "value", "op": ">=", "value": 50}`. The
property is a key of the event's properties (dots reach into objects:
`"order.total"`). The special property `url` reads `properties.url`, else the
page URL the snippet recorded in the event's context.

Operators: `=`, `!=`, `>`, `>=`, `<`, `<=`, `contains`, `not contains`, `exists`.
Comparisons with a number compare numerically (a numeric string in the event
counts as a number); `=` with text compares exactly; `contains` is
case-insensitive on text and tests membership on lists. A missing property
fails every operator except `!=` and `not contains`.

*Audience conditions* are one object on the campaign:
`{"email": "verified" | "unverified" | "any", "visitor": "new" | "returning" | "any",
"stage": "browse" | "cart" | "checkout" | "any",
"traits": [<conditions over the person's traits, with "trait" instead of "property">]}`.
A *new* visitor was first seen less than `NEW_VISITOR_MINUTES` before the trigger.
The funnel *stage* is the furthest of the ecommerce funnel's steps (`STAGES`) the
person reached in the `STAGE_DAYS` days up to the trigger, on any of their devices.

`compile_*` return SQL text with named parameters (psycopg `%(name)s`) plus the
parameter dict; names are prefixed so several campaigns share one statement.
"""

from __future__ import annotations

from typing import Any

OPS = ("=", "!=", ">", ">=", "<", "<=", "contains", "not contains", "exists")
NUMERIC_OPS = (">", ">=", "<", "<=")
EMAIL_CHOICES = ("verified", "unverified", "any")
VISITOR_CHOICES = ("new", "returning", "any")
NEW_VISITOR_MINUTES = 30
# Funnel stages, furthest last, and the event that reaches each.
STAGES = {"browse": "Product Viewed", "cart": "Product Added", "checkout": "Checkout Started"}
STAGE_CHOICES = (*STAGES, "any")
STAGE_DAYS = 30


class ConditionError(ValueError):
    """A condition a marketer wrote that cannot work; the message says how to fix it."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_conditions(conditions: Any, *, key: str = "property") -> list[dict]:
    """Check a list of conditions; raise ConditionError naming the bad one."""
    if conditions in (None, ""):
        return []
    if not isinstance(conditions, list):
        raise ConditionError("must be a list of conditions, e.g. " + _example(key))
    for n, condition in enumerate(conditions, start=1):
        where = f"condition {n}"
        if not isinstance(condition, dict):
            raise ConditionError(f"{where} must be an object like {_example(key)}")
        name = condition.get(key)
        if not isinstance(name, str) or not name.strip():
            raise ConditionError(f'{where} needs a "{key}" name')
        op = condition.get("op")
        if op not in OPS:
            raise ConditionError(f"{where}: operator {op!r} is not one of {', '.join(OPS)}")
        if op == "exists":
            continue
        if "value" not in condition:
            raise ConditionError(f'{where} ({name} {op}) needs a "value"')
        value = condition["value"]
        if op in NUMERIC_OPS and not _is_number(value):
            raise ConditionError(f"{where}: {name} {op} compares numbers; {value!r} is not one")
        if not (isinstance(value, str | bool) or _is_number(value)):
            raise ConditionError(f"{where}: the value must be text, a number or true/false")
        unknown = set(condition) - {key, "op", "value"}
        if unknown:
            raise ConditionError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return conditions


def validate_audience(audience: Any) -> dict:
    if audience in (None, ""):
        return {}
    if not isinstance(audience, dict):
        raise ConditionError(
            'must be an object like {"email": "verified", "visitor": "any", "traits": []}'
        )
    unknown = set(audience) - {"email", "visitor", "stage", "traits"}
    if unknown:
        raise ConditionError(
            f"unknown field(s) {', '.join(sorted(unknown))}; use email, visitor, stage, traits"
        )
    if audience.get("stage", "any") not in STAGE_CHOICES:
        raise ConditionError(f'"stage" must be one of {", ".join(STAGE_CHOICES)}')
    if audience.get("email", "any") not in EMAIL_CHOICES:
        raise ConditionError(f'"email" must be one of {", ".join(EMAIL_CHOICES)}')
    if audience.get("visitor", "any") not in VISITOR_CHOICES:
        raise ConditionError(f'"visitor" must be one of {", ".join(VISITOR_CHOICES)}')
    try:
        validate_conditions(audience.get("traits", []), key="trait")
    except ConditionError as exc:
        raise ConditionError(f"traits: {exc}") from None
    return audience


def _example(key: str) -> str:
    return f'[{{"{key}": "value", "op": ">=", "value": 50}}]'


# --- SQL -------------------------------------------------------------------------

_NUMERIC = (
    "(CASE WHEN jsonb_typeof({x}) = 'number' THEN ({x} #>> '{{}}')::numeric "
    "WHEN jsonb_typeof({x}) = 'string' AND ({x} #>> '{{}}') ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' "
    "THEN btrim({x} #>> '{{}}')::numeric END)"
)


def _compare(x: str, op: str, p: str, value: Any) -> str:
    """SQL for `<jsonb expression x> <op> <parameter p>`, NULL when x is missing."""
    if op == "exists":
        return f"({x} IS NOT NULL AND jsonb_typeof({x}) <> 'null')"
    if op in ("!=", "not contains"):
        positive = _compare(x, "=" if op == "!=" else "contains", p, value)
        return f"(NOT COALESCE({positive}, false))"
    if op == "contains":
        return (
            f"(CASE WHEN jsonb_typeof({x}) = 'array' THEN {x} @> jsonb_build_array(%({p})s::jsonb) "
            f"ELSE strpos(lower({x} #>> '{{}}'), lower(%({p})s::jsonb #>> '{{}}')) > 0 END)"
        )
    if _is_number(value):
        sql_op = "=" if op == "=" else op
        return f"({_NUMERIC.format(x=x)} {sql_op} %({p})s::numeric)"
    if isinstance(value, bool):
        return f"({x} = %({p})s::jsonb)"
    return f"(({x} #>> '{{}}') = %({p})s::text)"


def _param(value: Any, op: str) -> Any:
    import json

    if op in ("contains", "not contains"):
        return json.dumps(value)
    if isinstance(value, bool):
        return json.dumps(value)
    return value


def compile_conditions(
    conditions: list[dict],
    *,
    source: str,
    prefix: str,
    key: str = "property",
    url_sql: str | None = None,
) -> tuple[str, dict]:
    """AND of the conditions over the jsonb expression `source`. Empty list → TRUE."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    for n, condition in enumerate(conditions):
        name = condition[key].strip()
        op = condition["op"]
        p = f"{prefix}_{n}"
        if url_sql is not None and name == "url":
            x = url_sql
        else:
            params[f"{p}_path"] = name.split(".")
            x = f"({source} #> %({p}_path)s::text[])"
        if op != "exists":
            params[p] = _param(condition["value"], op)
        parts.append(_compare(x, op, p, condition.get("value")))
    return (" AND ".join(parts) or "TRUE"), params


def _stage_sql(profile: str, event_time: str) -> str:
    """The person's furthest funnel stage (0 none, 1 browse, 2 cart, 3 checkout)."""
    whens = []
    for number, event in reversed(list(enumerate(STAGES.values(), start=1))):
        whens.append(
            f"WHEN EXISTS (SELECT 1 FROM tracking_event st_ev WHERE st_ev.profile_id = {profile}.id"
            f" AND st_ev.type = 'track' AND st_ev.name = '{event}'"
            f" AND st_ev.timestamp <= {event_time}"
            f" AND st_ev.timestamp > {event_time} - interval '{STAGE_DAYS} days') THEN {number}"
        )
    return f"(CASE {' '.join(whens)} ELSE 0 END)"


def compile_audience(
    audience: dict, *, profile: str, event_time: str, prefix: str
) -> tuple[str, dict]:
    """SQL over the profile alias `profile` at the trigger time expression `event_time`."""
    parts: list[str] = []
    stage = audience.get("stage", "any")
    if stage != "any":
        parts.append(f"({_stage_sql(profile, event_time)} = {list(STAGES).index(stage) + 1})")
    email = audience.get("email", "any")
    if email == "verified":
        parts.append(f"({profile}.email_verified AND {profile}.email IS NOT NULL)")
    elif email == "unverified":
        parts.append(f"(NOT ({profile}.email_verified AND {profile}.email IS NOT NULL))")
    visitor = audience.get("visitor", "any")
    new = f"{profile}.first_seen_at > {event_time} - interval '{NEW_VISITOR_MINUTES} minutes'"
    if visitor == "new":
        parts.append(f"({new})")
    elif visitor == "returning":
        parts.append(f"(NOT ({new}))")
    traits_sql, params = compile_conditions(
        audience.get("traits") or [], source=f"{profile}.traits", prefix=prefix, key="trait"
    )
    if traits_sql != "TRUE":
        parts.append(traits_sql)
    return (" AND ".join(parts) or "TRUE"), params
