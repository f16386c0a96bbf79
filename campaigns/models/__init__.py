"""Campaigns app models, one module per idea (see each module's docstring)."""

from campaigns.models.audiences import (
    Audience,
    AudienceChange,
    AudienceMember,
    AudienceRule,
    Delivery,
    Destination,
)
from campaigns.models.core import Campaign, Decision, Enrollment, SitePolicy, Step
from campaigns.models.email import EmailTemplate, Message, Suppression

__all__ = [
    "Audience",
    "AudienceChange",
    "AudienceMember",
    "AudienceRule",
    "Campaign",
    "Decision",
    "Delivery",
    "Destination",
    "EmailTemplate",
    "Enrollment",
    "Message",
    "SitePolicy",
    "Step",
    "Suppression",
]
