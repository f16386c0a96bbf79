"""Rules that fill an audience from the events table, re-evaluated periodically.

One rule reads "did EVENT in the last N days and did not do UNLESS_EVENT in
that time". Evaluation is two statements over the events table, whatever the
audience's size: people who match and are not members join (or stay, with
their expiry extended); members the rule added who no longer match leave.
Members a campaign added are the campaign's: the rule never removes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from psycopg2 import sql

from campaigns.audiences import membership
from campaigns.models import AudienceRule

# Who matches, as (audience_id, profile_id): NOT EXISTS over the same index
# (site_id, name, timestamp) the first condition scans. Only people who may be
# shown ads: no Global Privacy Control, and advertising consent given (opt-in
# sites) or not refused (other sites).
MATCHING = """
SELECT DISTINCT %(audience)s::bigint AS audience_id, e.profile_id
FROM tracking_event e
JOIN tracking_profile p ON p.id = e.profile_id
JOIN tracking_site s ON s.id = p.site_id
WHERE e.site_id = %(site)s AND e.name = %(event)s
  AND e.timestamp > %(since)s AND e.timestamp <= %(now)s
  AND p.merged_into_id IS NULL AND NOT p.gpc
  AND (p.consent -> 'advertising' = 'true'::jsonb
       OR (s.consent_mode <> 'opt-in' AND p.consent -> 'advertising' IS DISTINCT FROM 'false'::jsonb))
  {unless}
"""

UNLESS = """
  AND NOT EXISTS (
      SELECT 1 FROM tracking_event o
      WHERE o.site_id = %(site)s AND o.name = %(unless)s AND o.profile_id = e.profile_id
        AND o.timestamp > %(since)s AND o.timestamp <= %(now)s)
"""


@dataclass(frozen=True)
class RuleResult:
    added: int
    removed: int


def evaluate_rule(rule_id: int, *, now: datetime) -> RuleResult:
    """Bring one rule's audience up to date at `now`."""
    with transaction.atomic():
        # The row lock makes two overlapping evaluations of one rule run one after the other.
        rule = (
            AudienceRule.objects.select_for_update(of=("self",))
            .select_related("audience")
            .get(pk=rule_id)
        )
        params = {
            "audience": rule.audience_id,
            "site": rule.audience.site_id,
            "event": rule.event,
            "unless": rule.unless_event,
            "since": now - timedelta(days=rule.within_days),
            "now": now,
        }
        matching = sql.SQL(MATCHING).format(unless=sql.SQL(UNLESS if rule.unless_event else ""))
        removed = membership.remove_members(
            where=sql.SQL(
                "m.audience_id = %(audience)s AND m.added_by = 'rule' AND NOT EXISTS ("
                "SELECT 1 FROM ({matching}) matching WHERE matching.profile_id = m.profile_id)"
            ).format(matching=matching),
            params=params,
            now=now,
            reason="no_longer_matches",
        )
        added = membership.add_matching(matching, params, now=now, reason="rule")
        rule.last_evaluated_at = now
        rule.save(update_fields=["last_evaluated_at"])
    return RuleResult(added=added, removed=removed)


def rules_to_evaluate() -> list[int]:
    return list(
        AudienceRule.objects.filter(enabled=True).order_by("id").values_list("id", flat=True)
    )
