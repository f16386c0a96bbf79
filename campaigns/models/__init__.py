"""Campaigns app models, one module per idea (see each module's docstring)."""

from campaigns.models.audiences import (
    Audience,
    AudienceChange,
    AudienceDay,
    AudienceMember,
    AudienceRule,
    Delivery,
    Destination,
)
from campaigns.models.core import (
    Campaign,
    Decision,
    EmailCapLock,
    Enrollment,
    ReportSnapshot,
    SitePolicy,
    Step,
)
from campaigns.models.email import (
    Attribution,
    CampaignOptOut,
    DevMail,
    EmailEvent,
    EmailSettings,
    EmailTemplate,
    Message,
    Suppression,
)
from campaigns.models.promo import PromoCode, PromoPool, StepPromo, StepVariant

__all__ = [
    "Attribution",
    "Audience",
    "AudienceChange",
    "AudienceDay",
    "AudienceMember",
    "AudienceRule",
    "Campaign",
    "CampaignOptOut",
    "Decision",
    "Delivery",
    "Destination",
    "DevMail",
    "EmailCapLock",
    "EmailEvent",
    "EmailSettings",
    "EmailTemplate",
    "Enrollment",
    "Message",
    "PromoCode",
    "PromoPool",
    "ReportSnapshot",
    "SitePolicy",
    "Step",
    "StepPromo",
    "StepVariant",
    "Suppression",
]
