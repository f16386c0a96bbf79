"""People: one person as reengage knows them.

Their timeline (`timeline`), and data-subject requests: export and erasure
(`privacy`, also behind the secret-key API in `api`).

May import audiences (an erased person leaves every audience). The names below
are what other areas may use.
"""

from campaigns.people.privacy import export, forget
from campaigns.people.timeline import timeline

__all__ = ["export", "forget", "timeline"]
