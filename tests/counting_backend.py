"""A real backend with every call counted: what a push costs in requests (tests and bench)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class CountingBackend:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            result = attribute(*args, **kwargs)
            if name in ("list", "list_after"):  # count the keys a listing returned, too
                keys = list(result)
                self.calls[f"{name}_keys"] += len(keys)
                return iter(keys)
            return result

        return counted
