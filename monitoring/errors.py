"""Errors raised by monitoring.

MonitoringError
└── ProfileError    a baseline cannot be built (no rows, a column of the wrong kind)
"""

from __future__ import annotations


class MonitoringError(Exception):
    pass


class ProfileError(MonitoringError, ValueError):
    pass
