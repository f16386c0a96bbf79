"""How many of an audience's current members each ad platform can match, and why.

Meta matches a browser by its `_fbp`/`_fbc` cookie values, Google by a GA4 client id
or an ad click id (tracking.AdIdentifiers, kept only while the person allows
advertising), and both by a hashed email (the member's `email_sha256`, set only for
verified, consenting people in audiences that share hashes). One aggregate query.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

# A member counts once however many of their browsers carry an id.
REACH = """
SELECT count(*),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM tracking_visitor v JOIN tracking_adidentifiers a ON a.visitor_id = v.id
           WHERE v.profile_id = m.profile_id AND (a.fbp <> '' OR a.fbc <> ''))),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM tracking_visitor v JOIN tracking_adidentifiers a ON a.visitor_id = v.id
           WHERE v.profile_id = m.profile_id
             AND (a.ga_client_id <> '' OR a.gclid <> '' OR a.gbraid <> '' OR a.wbraid <> ''))),
       count(*) FILTER (WHERE m.email_sha256 <> '')
FROM campaigns_audiencemember m
WHERE m.audience_id = %s AND m.removed_at IS NULL
"""


@dataclass(frozen=True)
class Reach:
    members: int
    meta: int  # with Meta's browser id (fbp) or click id (fbc)
    google: int  # with a GA4 client id or a Google ad click id
    hashed_email: int  # with a hashed email both platforms can match

    def sentence(self) -> str:
        """What the numbers mean to a marketer, in one or two sentences."""
        if not self.members:
            return "No current members, so no ad platform has anyone to show ads to yet."
        people = "member" if self.members == 1 else "members"
        text = (
            f"Of {self.members} current {people}, Meta can recognise {self.meta} by the "
            f"Meta cookie in their browser, Google {self.google} by their Google Analytics "
            f"cookie or a Google ad click, and {self.hashed_email} have a hashed email that "
            "both can match against their accounts."
        )
        unmatched = self.members - max(self.meta, self.google, self.hashed_email)
        if unmatched > 0:
            text += (
                " The others can only be reached once they bring one of these: many visit "
                "without Meta's or Google's tags on the page, block them, refuse advertising "
                "or send Global Privacy Control, and only verified emails of people who "
                "consented to advertising are hashed."
            )
        return text


def audience_reach(audience_id: int) -> Reach:
    with connection.cursor() as cursor:
        cursor.execute(REACH, [audience_id])
        return Reach(*cursor.fetchone())
