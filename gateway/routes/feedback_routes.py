"""``POST /endpoints/{name}/feedback``: ground truth for answers the endpoint gave.

    {"labels": [{"request_id": "...", "row": 0, "label": 1}, ...]}  ->  {"matched": N, "unmatched": M}

``request_id`` is the ``X-Lockgate-Request-Id`` of the answer (V2: its ``id``), ``row`` the row's
index in that request. A label is matched when this gateway logged and still remembers the answer
(``gateway/serving/answer_horizon.py``); matched labels move ``lockgate_live_score``. Every label,
matched or not, is committed to the inference log (``labels/`` beside ``windows/``), so a late
label, or one that reached another replica, still joins offline. Unknown request ids are counted
as unmatched, never an error. It is a prediction route for auth: the same tokens.
"""

from __future__ import annotations

import asyncio
from typing import Final

from fastapi import APIRouter, Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from lockgate.gateway.auth import AccessGuard
from lockgate.gateway.control.deployer import Deployer
from lockgate.gateway.errors import BadRequestError
from lockgate.gateway.serving.inference_log import InferenceLog, Label
from lockgate.gateway.serving.request_body import read_body
from lockgate.gateway.serving.request_ids import MAX_REQUEST_ID_LENGTH, REQUEST_ID_PATTERN

MAX_LABELS: Final = 100_000  # per request: send more in several
MAX_LABEL_TEXT: Final = 1024


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # The request-id rule (gateway/serving/request_ids.py): no answer has an id outside it.
    request_id: str = Field(min_length=1, max_length=MAX_REQUEST_ID_LENGTH, pattern=REQUEST_ID_PATTERN)
    row: int = Field(ge=0, le=2**31 - 1)
    label: StrictBool | StrictInt | StrictFloat | StrictStr = Field(union_mode="left_to_right")

    @field_validator("label")
    @classmethod
    def _bounded(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > MAX_LABEL_TEXT:
            raise ValueError(f"a text label has at most {MAX_LABEL_TEXT} characters")
        return value


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    labels: list[LabelIn] = Field(max_length=MAX_LABELS)


def _problem(exc: ValidationError) -> str:
    """The first few problems, by where they are, without echoing the (possibly huge) input."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(
            str(part) for part in error["loc"] if not str(part).startswith(("str", "int", "bool", "float"))
        )
        problems.append(f"{where or 'body'}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def feedback_router(deployer: Deployer, log: InferenceLog, guard: AccessGuard, *, max_body_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.post("/endpoints/{name}/feedback")
    async def feedback(name: str, request: Request) -> dict[str, int]:
        guard.prediction(request)
        endpoint = deployer.get(name)  # 404 naming the endpoints there are
        body = await read_body(request, max_body_bytes)
        try:
            parsed = FeedbackIn.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequestError(
                f'feedback needs {{"labels": [{{"request_id", "row", "label"}}, ...]}} (at most {MAX_LABELS:,} '
                f"labels; a label is a string, number or boolean): {_problem(exc)}"
            ) from None
        labels = [Label(item.request_id, item.row, item.label) for item in parsed.labels]
        window = (
            endpoint.current.options.inference_log_window if endpoint.current else endpoint.options.inference_log_window
        )
        matched, unmatched = await asyncio.to_thread(log.feedback, name, window, labels)
        return {"matched": matched, "unmatched": unmatched}

    return router
