"""Plain V2 inputs: rank-1 columns whose values a codec has already checked against their
datatypes, kept as the codec gave them (Python lists), with no per-input object.

Most V2 traffic is exactly this: one ``{"name", "datatype", "shape": [N], "data": [...]}`` per
signature column (tritonclient from a DataFrame, MLServer's ``"pd"`` convention), or the gRPC
equivalent. For such a request the lean path needs only each column's values in signature
order. Building a ``Tensor`` per input first cost about 20 us of a 1-row, 40-column request in a
live server (py-spy, docs/performance.md, 2026-12-03): more than the whole ``/invocations``
parse of the same row. Tensors are made from these columns only when a slower path asks.
"""

from __future__ import annotations

from typing import Any


class PlainColumns:
    """Checked rank-1 inputs, as the request listed them: ``names``, ``datatypes`` and each
    input's ``values``; ``rows`` when every input has the same length (else None).

    ``finite``: the codec guarantees every number is finite. JSON does (orjson refuses
    ``NaN``, ``Infinity`` and any number that overflows a double), so the lean path skips its
    check; gRPC's FP32 and FP64 contents may hold inf or NaN, so they are checked."""

    __slots__ = ("_by_name", "datatypes", "finite", "names", "rows", "values")

    def __init__(
        self,
        names: tuple[str, ...],
        datatypes: tuple[str, ...],
        values: tuple[list[Any], ...],
        rows: int | None,
        *,
        finite: bool,
    ) -> None:
        self.names, self.datatypes, self.values, self.rows = names, datatypes, values, rows
        self.finite = finite
        self._by_name: dict[str, tuple[str, list[Any]]] | None = None

    @classmethod
    def of(cls, order: list[tuple[str, str, list[Any]]], *, finite: bool) -> PlainColumns:
        """From (name, datatype, values) triples; ``rows`` from their lengths."""
        names, datatypes, values = (tuple(part) for part in zip(*order, strict=True)) if order else ((), (), ())
        lengths = set(map(len, values))
        return cls(names, datatypes, values, lengths.pop() if len(lengths) == 1 else None, finite=finite)

    def order(self) -> list[tuple[str, str, list[Any]]]:
        return list(zip(self.names, self.datatypes, self.values, strict=True))

    def matches(self, names: tuple[str, ...]) -> bool:
        """Whether the inputs are exactly these (signature) names and share one length: then
        the general path's checks would all pass, and the lean path may read the columns."""
        if self.rows is None or len(self.names) != len(names):
            return False
        return self.names == names or set(self.names) == set(names)

    def columns(self, order: tuple[str, ...]) -> tuple[set[str], list[list[Any]]]:
        """(the datatypes, each column's values) in ``order``; every name must be an input."""
        if self.names == order:  # the usual request: the columns in signature order, no lookup
            return set(self.datatypes), list(self.values)
        if self._by_name is None:
            self._by_name = {n: (d, v) for n, d, v in zip(self.names, self.datatypes, self.values, strict=True)}
        picked = [self._by_name[name] for name in order]
        return {datatype for datatype, _ in picked}, [values for _, values in picked]
