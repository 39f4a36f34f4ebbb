"""The one rule for endpoint names, enforced at every entry point (CLI, config file, admin API,
Helm values) and once more by the deployer, which every deploy goes through.

A name is a path segment in the ledger (``events/<name>/...``), a URL segment in
``/endpoints/<name>/invocations`` and a Prometheus label value, so it must be safe in all three.
"""

from __future__ import annotations

import re
from pathlib import Path

from lockgate.gateway.errors import InvalidEndpointNameError
from lockgate.loader.materialized_copy import is_materialized_copy, read_copy
from lockgate.loader.model_uri import parse_model_uri

ENDPOINT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
ENDPOINT_NAME_RULE = "1 to 63 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(ENDPOINT_NAME_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_endpoint_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(str(name)) <= 80 else f"{str(name)[:80]!r}... ({len(str(name)):,} characters)"
        raise InvalidEndpointNameError(f"invalid endpoint name {shown}: use {ENDPOINT_NAME_RULE}")
    return name


def default_name(model_uri: str) -> str:
    """The endpoint name a URI gets when none is given: the registered model's name (or the
    store path's last segment), made to fit the rule. Raises ``ModelURIError`` for a URI
    that is not one lockgate can deploy."""
    if is_materialized_copy(model_uri):
        raw = read_copy(model_uri)[0].name or Path(model_uri.removeprefix("file://")).name
        return _fitted(raw)
    ref = parse_model_uri(model_uri)
    if ref.name:
        raw = ref.name
    elif ref.store_uri is not None:
        raw = (ref.store_uri.path.rsplit("/", 1)[-1] or ref.store_uri.repo).replace(".", "-")
    else:
        raw = (ref.selector or ref.run_id or "model").replace(".", "-")
    return _fitted(raw)


def _fitted(raw: str) -> str:
    # Registered model names may hold spaces or '/'; an endpoint name may not.
    return check_endpoint_name(_UNSAFE.sub("-", raw).lstrip("._-")[:63] or "model")
