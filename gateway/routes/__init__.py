"""The HTTP layer: thin routers, one per protocol plus endpoints and admin, over the deployer
and the invocation pipeline. Each module builds one ``APIRouter``; ``gateway.app`` composes them."""
