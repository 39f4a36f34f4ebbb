"""What a configured endpoint is before it is deployed: a name, a model URI, follow mode, its
serving options and its traffic policy (from ``lockgate serve`` arguments, the config file, or
Helm's values)."""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.gateway.control.traffic_policy import CanarySpec, ShadowSpec
from lockgate.gateway.serving.serving_options import ServingOptions


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    model_uri: str
    follow: bool | None = None
    options: ServingOptions | None = None  # None: the gateway-wide defaults from Settings
    canary: CanarySpec | None = None
    shadow: ShadowSpec | None = None
