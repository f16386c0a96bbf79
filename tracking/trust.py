"""What a call may change: the trust model (docs/security.md "Trust model"), in one place.

The write key is public, so a call made with it is a claim by one browser. It may
describe that browser (its anonymous id, page views, cart, its own consent), but it
may change a *known person* only when it carries a proof that the shop's backend
computed with the site's secret key and bound to that person's userId:

    user_hash = hex(HMAC-SHA256(secret key, userId + "\\n" + lower-cased trimmed email))

(the email part empty when the call carries none). Each call gets a trust level at
ingest (`classify`, pure Python, no database) and the flusher applies the rule in
one statement (`CLAIMS`, set-based over the staged batch, before any identity is
stitched or profile updated):

- SECRET (the secret key): everything, as before.
- PROVEN (a browser call whose `user_hash` matches its userId and email): may link the
  browser to that userId, set the verified email, traits, consent, GPC; its aliases
  only when `previousId` is the call's own anonymousId.
- BROWSER (no proof, or the old email-only `user_hash`): when it names a userId that
  already has a profile (a *known* userId), or aliases anything but its own
  anonymousId, the flusher **demotes** it: the event is stored, but as a call of its
  own browser only (userId and previousId cleared, the claim kept in
  `context.unproven`), so its traits, consent, GPC, email, cart and goals land on the
  browser's own profile and no identity is linked. A userId nobody has used yet may
  still be claimed by a browser (a first login with no proof; old installs) unless the
  site requires the proof -- such a profile is marked `user_id_proven = false`, and the
  first proven or secret-key call that gives that userId an email takes the userId away
  from it unless it confirms the claim (see `CLAIMS`), so a stranger cannot prepare a
  profile that a customer's emails would later use.

The one exception for old installs: an email-only `user_hash` that matches the known
person's own verified address (the shop's backend minted it for that person) counts
as speaking for them, as it did before, so an old install's second device still joins.
An email-only hash never replaces a different verified address (tracking/storage.py
`UPDATE_PROFILES`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

BROWSER = 0  # the write key without a proof bound to the userId
PROVEN = 1  # the write key with a user_hash bound to the userId (and email)
SECRET = 2  # the secret key: a server-side call


def identity_proof(secret_key: str, user_id: str, email: str = "") -> str:
    """The `user_hash` a shop's backend computes for a browser call naming `user_id`."""
    message = f"{user_id}\n{email.strip().lower()}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def email_hash(secret_key: str, email: str) -> str:
    """The old, email-only `user_hash` (before the trust model): proves an email only."""
    message = email.strip().lower().encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def _matches(expected: Iterable[str], given: str) -> bool:
    # No short-circuit on the first match: the time does not tell which key matched.
    found = False
    for value in expected:
        found |= hmac.compare_digest(value, given)
    return found


def classify(
    *,
    trusted: bool,
    secret_keys: tuple[str, ...],
    event_type: str,
    user_id: str,
    anonymous_id: str,
    previous_id: str,
    email: str,
    user_hash: str,
) -> tuple[int, bool] | None:
    """(trust level, whether the call's email is verified), or None for a `user_hash`
    that proves nothing (the caller answers 400 naming the field)."""
    if trusted:
        return SECRET, bool(email)
    if not user_hash:
        return BROWSER, False
    # compare_digest refuses str with non-ASCII characters (a TypeError, so a 500);
    # no such string is a hex digest anyway.
    given = user_hash.strip().lower()
    if not given.isascii():
        return None
    if user_id and _matches((identity_proof(k, user_id, email) for k in secret_keys), given):
        # The proof names the userId, not an alias's previousId: an alias is proven
        # only for the browser's own anonymous id.
        own = event_type != "alias" or previous_id == anonymous_id
        return (PROVEN if own else BROWSER), bool(email)
    if email and _matches((email_hash(k, email) for k in secret_keys), given):
        return BROWSER, True
    return None


# The flusher's one statement that applies the rule above to the staged batch
# (tracking/storage.py runs it after dedupe, before stitching). Both parts see the
# database as the pass found it, so "known" means known before this batch.
#
# demoted: unproven calls naming a known userId (unless an old email-only hash matches
#   that person's own verified address), and unproven aliases of anything but the
#   browser's own anonymous id, become calls of their browser only.
#   Where the site requires the proof (`Site.require_identity_proof`), an unproven call
#   naming any userId is demoted, known or not. Inside one batch, a userId that a proven
#   call names counts as known too, with the proven call's email as the person's (a
#   claim racing its owner's first sign-in in the same pass must not join them), and
#   of several browsers claiming a new userId the first one wins.
# claims: a proven or secret-key call that gives an email to a userId whose profile was
#   only claimed by a browser either confirms the claim (the email is the claimed
#   profile's verified address) or takes the userId away from it (the claimed profile
#   stays its browsers' anonymous profile; the userId gets a new profile in this pass).
#   A call without an email (a server-side order) leaves the claim as it is: it cannot
#   tell an old install's own first sign-in from a stranger's, and what it adds (an
#   order) does not make the profile mail anyone new.
CLAIMS = """
WITH batch_ids AS (
    -- Each userId the batch names: whether a proven call names it too (and with which
    -- emails), and the first browser to claim it without a proof.
    SELECT site_id, user_id, bool_or(trust > 0) AS proven_here,
           array_agg(lower(email)) FILTER (WHERE trust > 0 AND email <> '') AS proven_emails,
           (array_agg(anonymous_id ORDER BY seq) FILTER (WHERE trust = 0))[1] AS first_claimer
    FROM _stage WHERE user_id <> '' GROUP BY site_id, user_id
), demoted AS (
    UPDATE _stage s SET
        context = s.context || jsonb_build_object('unproven', jsonb_strip_nulls(
            jsonb_build_object('userId', NULLIF(s.user_id, ''),
                               'previousId', NULLIF(s.previous_id, '')))),
        user_id = '', previous_id = ''
    WHERE s.trust = 0 AND (
        (s.type = 'alias' AND s.previous_id <> s.anonymous_id)
        OR (s.user_id <> '' AND EXISTS (
            SELECT 1 FROM tracking_site t WHERE t.id = s.site_id AND t.require_identity_proof))
        OR (s.user_id <> '' AND EXISTS (
            SELECT 1 FROM batch_ids b WHERE b.site_id = s.site_id AND b.user_id = s.user_id
              AND ((b.proven_here AND NOT COALESCE(
                        s.email_verified AND lower(s.email) = ANY (b.proven_emails), false))
                   OR b.first_claimer <> s.anonymous_id)))
        OR (s.user_id <> '' AND EXISTS (
            SELECT 1 FROM tracking_profile p
            WHERE p.site_id = s.site_id AND p.user_id = s.user_id
              AND NOT COALESCE(s.email_verified AND p.email_verified
                               AND lower(p.email) = lower(s.email), false))))
    RETURNING 1
), claims AS (
    UPDATE tracking_profile p SET
        user_id = CASE WHEN c.confirmed THEN p.user_id END,
        user_id_proven = c.confirmed
    FROM (
        SELECT s.site_id, s.user_id,
               COALESCE(bool_or(s.email_verified AND q.email_verified
                                AND lower(q.email) = lower(s.email)), false) AS confirmed
        FROM _stage s
        JOIN tracking_profile q ON q.site_id = s.site_id AND q.user_id = s.user_id
        WHERE s.trust > 0 AND s.user_id <> '' AND s.email <> '' AND NOT q.user_id_proven
        GROUP BY s.site_id, s.user_id
    ) c
    WHERE p.site_id = c.site_id AND p.user_id = c.user_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM demoted), (SELECT count(*) FROM claims)
"""
