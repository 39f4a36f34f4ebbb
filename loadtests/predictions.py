"""Predictions at mixed batch sizes, from the model's own input example.

locust -f loadtests/predictions.py --headless -u 16 -r 16 -t 30s --host http://127.0.0.1:8080
"""

from __future__ import annotations

import random

from common import ENDPOINT, payloads_from_example
from locust import FastHttpUser, task

HEADERS = {"Content-Type": "application/json"}


class PredictingUser(FastHttpUser):
    """A client posting pandas-split requests and checking every answer."""

    def on_start(self) -> None:
        with self.client.get(f"/endpoints/{ENDPOINT}/example", name="example", catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"no input example: {answer.status_code} {answer.text[:200]}")
                raise RuntimeError("the endpoint has no input example")
            self.payloads = payloads_from_example(answer.json(), seed=random.randrange(1 << 30))
        self.sizes = list(self.payloads)

    @task
    def predict(self) -> None:
        size = random.choice(self.sizes)
        with self.client.post(
            f"/endpoints/{ENDPOINT}/invocations",
            data=self.payloads[size],
            headers=HEADERS,
            name=f"invocations [{size} rows]",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return
            predictions = answer.json().get("predictions")
            if not isinstance(predictions, list) or len(predictions) != size:
                answer.failure(f"expected {size} predictions, got {str(predictions)[:100]}")
                return
            self.on_answer(answer.headers)

    def on_answer(self, headers: dict[str, str]) -> None:
        """Hook for the swap and follow scenarios (which version answered)."""
