"""lockgate: one import namespace for everything the project installs.

The repository keeps its four packages as top-level folders (``store/``, ``loader/``,
``gateway/``, ``monitoring/``); they are installed, and imported, only as ``lockgate.store``,
``lockgate.loader``, ``lockgate.gateway`` and ``lockgate.monitoring``. The folders here are
links to them, so an editable install, a wheel, mypy and the Docker build all see one tree.

Why: names such as ``store`` and ``monitoring`` belong to unrelated packages on the index and to
users' own files (a ``store.py`` beside a training script), and a top-level package of ours would
lose to them, or shadow them, wherever the ``lockgate://`` plugins load.
"""
