"""Trigger and audience conditions: validation messages and their SQL, run on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from campaigns.engine.conditions import (
    ConditionError,
    compile_conditions,
    validate_audience,
    validate_conditions,
)
from campaigns.engine.enrollment import holdout_bucket_sql
from campaigns.engine.rules import holdout_bucket

pytestmark = pytest.mark.django_db


def matches(condition: dict, properties: dict) -> bool:
    sql, params = compile_conditions([condition], source="x.props", prefix="c")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql} FROM (SELECT %(props)s::jsonb AS props) x",
            {**params, "props": json.dumps(properties)},
        )
        return cursor.fetchone()[0] is True


@pytest.mark.parametrize(
    ("condition", "properties", "expected"),
    [
        ({"property": "value", "op": ">=", "value": 50}, {"value": 50}, True),
        ({"property": "value", "op": ">=", "value": 50}, {"value": 49.99}, False),
        ({"property": "value", "op": ">=", "value": 50}, {"value": "75.5"}, True),
        ({"property": "value", "op": ">", "value": 50}, {"value": "lots"}, False),
        ({"property": "value", "op": "<", "value": 10}, {}, False),
        ({"property": "value", "op": "<=", "value": 10}, {"value": 10}, True),
        ({"property": "value", "op": "=", "value": 10}, {"value": 10.0}, True),
        ({"property": "currency", "op": "=", "value": "EUR"}, {"currency": "EUR"}, True),
        ({"property": "currency", "op": "=", "value": "EUR"}, {"currency": "eur"}, False),
        ({"property": "currency", "op": "!=", "value": "EUR"}, {"currency": "USD"}, True),
        ({"property": "currency", "op": "!=", "value": "EUR"}, {}, True),
        ({"property": "currency", "op": "!=", "value": "EUR"}, {"currency": "EUR"}, False),
        (
            {"property": "url", "op": "contains", "value": "/Pricing"},
            {"url": "https://a/pricing?x"},
            True,
        ),
        (
            {"property": "url", "op": "not contains", "value": "/pricing"},
            {"url": "https://a/blog"},
            True,
        ),
        (
            {"property": "url", "op": "not contains", "value": "/pricing"},
            {"url": "https://a/pricing"},
            False,
        ),
        ({"property": "tags", "op": "contains", "value": "sale"}, {"tags": ["new", "sale"]}, True),
        ({"property": "tags", "op": "contains", "value": "sal"}, {"tags": ["new", "sale"]}, False),
        ({"property": "coupon", "op": "exists"}, {"coupon": "X"}, True),
        ({"property": "coupon", "op": "exists"}, {"coupon": None}, False),
        ({"property": "coupon", "op": "exists"}, {}, False),
        ({"property": "order.total", "op": ">", "value": 100}, {"order": {"total": 120}}, True),
        ({"property": "gift", "op": "=", "value": True}, {"gift": True}, True),
        ({"property": "gift", "op": "=", "value": True}, {"gift": "true"}, False),
    ],
)
def test_a_property_condition_matches_as_a_marketer_would_expect(condition, properties, expected):
    assert matches(condition, properties) is expected


def test_several_conditions_must_all_hold():
    sql, params = compile_conditions(
        [
            {"property": "value", "op": ">=", "value": 50},
            {"property": "currency", "op": "=", "value": "EUR"},
        ],
        source="x.props",
        prefix="c",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql} FROM (SELECT %(props)s::jsonb AS props) x",
            {**params, "props": json.dumps({"value": 60, "currency": "USD"})},
        )
        assert cursor.fetchone()[0] is False


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ({"property": "value"}, "must be a list"),
        ([{"op": "=", "value": 1}], 'condition 1 needs a "property" name'),
        ([{"property": "value", "op": "~", "value": 1}], "operator '~' is not one of"),
        (
            [{"property": "value", "op": ">=", "value": "fifty"}],
            "compares numbers; 'fifty' is not one",
        ),
        ([{"property": "value", "op": "="}], 'needs a "value"'),
        ([{"property": "value", "op": "=", "value": [1]}], "must be text, a number or true/false"),
        ([{"property": "value", "op": "=", "value": 1, "valu": 2}], "unknown field(s) valu"),
    ],
)
def test_a_bad_condition_is_refused_with_a_message_naming_it(conditions, message):
    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_conditions(conditions)


def test_audience_conditions_are_checked_field_by_field():
    assert validate_audience({"email": "verified", "visitor": "returning"})
    with pytest.raises(ConditionError, match='"email" must be one of'):
        validate_audience({"email": "yes"})
    assert validate_audience({"stage": "cart"})
    with pytest.raises(ConditionError, match='"stage" must be one of browse, cart, checkout, any'):
        validate_audience({"stage": "paid"})
    with pytest.raises(ConditionError, match="unknown field"):
        validate_audience({"funnel": "cart"})
    with pytest.raises(ConditionError, match="traits: condition 1"):
        validate_audience({"traits": [{"trait": "plan", "op": "=="}]})


def test_the_sql_holdout_bucket_is_the_documented_python_function():
    sql = f"SELECT {holdout_bucket_sql('%s::bigint', '%s::bigint')}"
    with connection.cursor() as cursor:
        for campaign_id, profile_id in [(1, 1), (7, 123456), (99, 2**40), (3, 987)]:
            cursor.execute(sql, [campaign_id, profile_id])
            assert cursor.fetchone()[0] == holdout_bucket(campaign_id, profile_id)
