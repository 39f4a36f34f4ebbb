"""The model URI forms lockgate understands, parsed without touching any server.

| form                         | kind      | moves? |
|------------------------------|-----------|--------|
| models:/NAME/Production      | stage     | yes    |
| models:/NAME@champion        | alias     | yes    |
| models:/NAME/latest          | latest    | yes    |
| models:/NAME/3               | version   | no     |
| models:/m-<id>               | logged    | no     |
| runs:/RUN_ID/path            | run       | no     |
| lockgate://REPO@REF/PATH     | store     | only if REF is a branch |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lockgate.loader.errors import ModelURIError
from lockgate.store import StoreURI, is_store_uri, parse_uri
from lockgate.store.errors import InvalidURIError
from lockgate.store.paths import MAX_SEGMENT_BYTES

Kind = Literal["stage", "alias", "latest", "version", "logged", "run", "store"]
STAGES = {"production": "Production", "staging": "Staging", "archived": "Archived", "none": "None"}
_NAME = r"[^/@]+"
_MODELS = re.compile(rf"models:/(?P<name>{_NAME})(?:/(?P<selector>[^/@]+)|@(?P<alias>[^/@]+))/?")
_LOGGED = re.compile(r"models:/(?P<id>m-[0-9a-f]{32})/?")
_RUNS = re.compile(r"runs:/(?P<run>[0-9a-f]{32})(?:/(?P<path>.*))?")
_VERSION = re.compile(r"[0-9]{1,18}")  # MLflow's versions are int64 in its SQL store
MOVING: frozenset[str] = frozenset({"stage", "alias", "latest"})


@dataclass(frozen=True)
class ModelRef:
    uri: str
    kind: Kind
    name: str | None = None
    selector: str | None = None  # stage name, alias, or version number
    run_id: str | None = None
    path: str = ""
    store_uri: StoreURI | None = None

    @property
    def moves(self) -> bool:
        """Whether re-resolving later may give a different answer (follow mode's default)."""
        if self.kind == "store" and self.store_uri is not None:
            if self.store_uri.at is not None:
                return False  # time travel names one moment: the commit it resolves to is pinned
            return not re.fullmatch(r"[0-9a-f]{64}", self.store_uri.ref.name)
        return self.kind in MOVING


def parse_model_uri(uri: str) -> ModelRef:
    uri = uri.strip()
    check_components(uri)
    if is_store_uri(uri):
        try:
            store_uri = parse_uri(uri)
            return ModelRef(uri, "store", store_uri=store_uri, path=store_uri.path)
        except InvalidURIError as exc:
            raise ModelURIError(str(exc)) from exc
    if match := _LOGGED.fullmatch(uri):
        return ModelRef(uri, "logged", selector=match.group("id"))
    if match := _MODELS.fullmatch(uri):
        name = match.group("name")
        if alias := match.group("alias"):
            return ModelRef(uri, "alias", name=name, selector=alias)
        selector = match.group("selector") or ""
        if _VERSION.fullmatch(selector):
            return ModelRef(uri, "version", name=name, selector=selector)
        if selector.isdigit():  # past int64 (or not ASCII): no registry holds such a version
            raise ModelURIError(f"cannot read {uri!r}: version {selector!r} is not a version number (1 to 18 digits)")
        if selector.lower() == "latest":
            return ModelRef(uri, "latest", name=name)
        if selector.lower() in STAGES:
            return ModelRef(uri, "stage", name=name, selector=STAGES[selector.lower()])
        raise ModelURIError(
            f"cannot read {uri!r}: after the model name expected a version number, 'latest' or a stage "
            f"({', '.join(STAGES.values())}); for an alias write models:/{name}@{selector}"
        )
    if match := _RUNS.fullmatch(uri):
        return ModelRef(uri, "run", run_id=match.group("run"), path=(match.group("path") or "").strip("/"))
    raise ModelURIError(
        f"unsupported model URI {uri!r}: use models:/NAME/STAGE, models:/NAME@ALIAS, models:/NAME/VERSION, "
        "models:/NAME/latest, models:/m-ID, runs:/RUN_ID/PATH or lockgate://REPO@REF/PATH"
    )


def check_components(uri: str) -> None:
    """Refuse a URI with a path component no file system or registry name can hold (NAME_MAX,
    255 bytes), naming it, before anything uses it as a path: a local path of such a component
    used to fail deep in a deploy with ENAMETOOLONG, answered 500."""
    for component in uri.split("/"):
        size = len(component.encode("utf-8", "surrogatepass"))
        if size > MAX_SEGMENT_BYTES:
            raise ModelURIError(
                f"model URI {uri[:80]!r}... has a path component of {size:,} bytes: "
                f"at most {MAX_SEGMENT_BYTES} bytes each"
            )
