"""Errors raised by monitoring.

MonitoringError
├── ProfileError          a baseline cannot be built (no rows, a column of the wrong kind)
└── ShadowMismatchError   a shadow's answer cannot be compared with its primary's (its shape)
"""

from __future__ import annotations


class MonitoringError(Exception):
    pass


class ProfileError(MonitoringError, ValueError):
    pass


class ShadowMismatchError(MonitoringError, ValueError):
    pass
