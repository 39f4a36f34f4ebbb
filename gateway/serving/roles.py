"""The roles a deployment of an endpoint can serve in: one enum, used everywhere a role is named.

``Role`` is a ``StrEnum``: its members are the strings they always were (``"primary"``,
``"canary"``, ``"shadow"``), so metric labels, headers, ledger events and JSON stay the same.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    PRIMARY = "primary"  # the endpoint's own reference; takes what the canary does not
    CANARY = "canary"  # a reference and a share of the traffic
    SHADOW = "shadow"  # gets a copy of the primary's requests, off the request path


PRIMARY: Final = Role.PRIMARY
CANARY: Final = Role.CANARY
SHADOW: Final = Role.SHADOW
