"""One date format across the admin (FORMAT_MODULE_PATH in settings).

Django's English formats write "Dec. 2, 2026, 6:09 p.m." where our own screens
(timelines, reports) write "2026-12-02 18:09:26": every screen uses these now.
"""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
