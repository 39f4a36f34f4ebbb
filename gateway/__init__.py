"""lockgate's composition root: settings, the HTTP gateway (routes, deployments, hot swap, follow
mode, the ledger) and the ``lockgate`` CLI. The only package that reads the environment or speaks
HTTP; it imports ``loader``, ``monitoring`` and ``store``, and nothing imports it."""
