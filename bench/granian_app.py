"""The gateway's app for granian's factory mode (``bench/asgi_servers.py``): one endpoint,
``models:/$GRANIAN_APP_MODEL/1``, on the settings of the environment, as ``lockgate serve`` builds it."""

from __future__ import annotations

import os

from fastapi import FastAPI

from lockgate.gateway.app import create_app
from lockgate.gateway.control.endpoint_spec import EndpointSpec
from lockgate.gateway.settings import Settings


def app() -> FastAPI:
    model = os.environ["GRANIAN_APP_MODEL"]
    return create_app(Settings(), [EndpointSpec(model, f"models:/{model}/1")])
