"""Reports: what a campaign did per step and whether it lifts conversions.

`campaign` computes a report with a fixed number of aggregate queries,
`snapshots` keeps large campaigns' reports computed in the background, and
`charts` turns both (and audience histories) into inline-SVG geometry.

May import audiences (an audience's member chart). The names below are what other
areas may use.
"""

from campaigns.reports.campaign import campaign_report
from campaigns.reports.snapshots import page_report

__all__ = ["campaign_report", "page_report"]
