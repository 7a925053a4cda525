"""Fault knobs set through `POST /_sim/faults`.

Webhook knobs act on the next N deliveries, in this precedence: drop > reorder > delay; duplicate
combines with reorder and delay. API knobs act on Fintecture API calls (`/oauth/*`, `/pis/*`),
optionally only those whose path starts with `path_prefix`: each eligible call is hit with
probability `fraction` (drawn from a generator seeded with `seed`, so a run is reproducible), at
most `count` times (`null` = until cleared).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Knob(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CountFault(_Knob):
    count: int = Field(ge=0, description="How many of the next deliveries")


class DuplicateFault(_Knob):
    count: int = Field(ge=0)
    copies: int = Field(default=2, ge=2, le=20, description="Times each delivery is sent in total")


class DelayFault(_Knob):
    count: int = Field(ge=0)
    seconds: float = Field(gt=0, description="Clock seconds before the first attempt")


class _ApiKnob(_Knob):
    count: int | None = Field(default=None, ge=0, description="Maximum number of calls hit; null = no limit")
    fraction: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    path_prefix: str | None = None


class ApiErrorFault(_ApiKnob):
    status: Literal[429, 500, 503]
    retry_after: int | None = Field(default=None, ge=0, description="Retry-After header (429 and 503)")


class ApiLatencyFault(_ApiKnob):
    seconds: float = Field(gt=0, le=60, description="Real seconds added before the call is handled")


class FaultsRequest(_Knob):
    """Each knob given replaces that knob's current setting; knobs not given are left alone."""

    webhook_drop: CountFault | None = None
    webhook_duplicate: DuplicateFault | None = None
    webhook_reorder: CountFault | None = Field(
        default=None, description="Hold the next N deliveries, then send them newest first"
    )
    webhook_delay: DelayFault | None = None
    api_error: ApiErrorFault | None = None
    api_latency: ApiLatencyFault | None = None


@dataclass
class WebhookPlan:
    """What the faults do to one delivery."""

    drop: bool = False
    copies: int = 1
    reorder: bool = False
    delay_seconds: float = 0.0

    def labels(self) -> list[str]:
        labels = []
        if self.drop:
            labels.append("dropped")
        if self.copies > 1:
            labels.append(f"duplicated x{self.copies}")
        if self.reorder:
            labels.append("reordered")
        if self.delay_seconds:
            labels.append(f"delayed {self.delay_seconds:g}s")
        return labels


class _Trigger:
    """Decides, call by call, whether an API knob hits."""

    def __init__(self, knob: _ApiKnob) -> None:
        self.path_prefix = knob.path_prefix
        self.fraction = knob.fraction
        self.remaining = knob.count
        self.random = random.Random(knob.seed)  # reproducible fault injection, not security

    def fires(self, path: str) -> bool:
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.remaining == 0:
            return False
        if self.random.random() >= self.fraction:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


class Faults:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._drop = 0
        self._duplicate = 0
        self._copies = 2
        self._reorder = 0
        self._reorder_batch = 0
        self._delay = 0
        self._delay_seconds = 0.0
        self._api_error: tuple[ApiErrorFault, _Trigger] | None = None
        self._api_latency: tuple[ApiLatencyFault, _Trigger] | None = None

    def apply(self, request: FaultsRequest) -> None:
        if request.webhook_drop is not None:
            self._drop = request.webhook_drop.count
        if request.webhook_duplicate is not None:
            self._duplicate = request.webhook_duplicate.count
            self._copies = request.webhook_duplicate.copies
        if request.webhook_reorder is not None:
            self._reorder = self._reorder_batch = request.webhook_reorder.count
        if request.webhook_delay is not None:
            self._delay = request.webhook_delay.count
            self._delay_seconds = request.webhook_delay.seconds
        if request.api_error is not None:
            self._api_error = (request.api_error, _Trigger(request.api_error))
        if request.api_latency is not None:
            self._api_latency = (request.api_latency, _Trigger(request.api_latency))

    @property
    def reorder_batch_size(self) -> int:
        return self._reorder_batch

    def plan_webhook(self) -> WebhookPlan:
        plan = WebhookPlan()
        if self._drop:
            self._drop -= 1
            plan.drop = True
            return plan
        if self._duplicate:
            self._duplicate -= 1
            plan.copies = self._copies
        if self._reorder:
            self._reorder -= 1
            plan.reorder = True
        elif self._delay:
            self._delay -= 1
            plan.delay_seconds = self._delay_seconds
        return plan

    def api_error(self, path: str) -> ApiErrorFault | None:
        if self._api_error is not None and self._api_error[1].fires(path):
            return self._api_error[0]
        return None

    def api_latency(self, path: str) -> float:
        if self._api_latency is not None and self._api_latency[1].fires(path):
            return self._api_latency[0].seconds
        return 0.0

    def snapshot(self) -> dict[str, Any]:
        def api(setting: tuple[_ApiKnob, _Trigger] | None) -> dict[str, Any] | None:
            if setting is None:
                return None
            knob, trigger = setting
            return {**knob.model_dump(), "remaining": trigger.remaining}

        return {
            "webhook_drop": {"remaining": self._drop},
            "webhook_duplicate": {"remaining": self._duplicate, "copies": self._copies},
            "webhook_reorder": {"remaining": self._reorder, "batch": self._reorder_batch},
            "webhook_delay": {"remaining": self._delay, "seconds": self._delay_seconds},
            "api_error": api(self._api_error),
            "api_latency": api(self._api_latency),
        }
