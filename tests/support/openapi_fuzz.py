"""Schemathesis over a live service's /openapi.json, as a process of its own.

    python -m tests.support.openapi_fuzz BASE_URL --examples N --seconds S
        [--header 'Name: value'] [--path-parameter name=value]

Every operation of the document is run in both generation modes (valid and invalid requests), up
to N generated cases per operation and mode, for at most S seconds. Prints one JSON line: requests
sent, statuses returned, failures (any 5xx, or any answer its document does not declare: status,
content type, body or headers), and how many operation-mode runs the time budget left out.

It runs beside the service rather than in the test's process so that generating cases (CPU in
Python) and serving them do not share one interpreter lock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    skipped_for_time: int = 0

    def as_json(self) -> str:
        return json.dumps(
            {
                "requests": self.requests,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "failures": self.failures,
                "skipped_for_time": self.skipped_for_time,
            }
        )


def _run_operation(
    operation: Any,
    mode: GenerationMode,
    report: FuzzReport,
    *,
    base_url: str,
    headers: dict[str, str],
    path_parameters: dict[str, str],
    examples: int,
) -> None:
    bound = {
        name: value
        for name, value in path_parameters.items()
        if any(p.name == name and p.location == "path" for p in operation.iter_parameters())
    }

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(mode, path_parameters=bound or None))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, allow_redirects=False, timeout=20)
        report.requests += 1
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:  # every check that failed on this answer
            report.failures.append(f"{operation.label} ({mode.value}): {exc}"[:4000])

    with suppress(Unsatisfiable):  # an operation without inputs has no invalid request
        run()


def fuzz(
    base_url: str,
    *,
    headers: dict[str, str],
    path_parameters: dict[str, str],
    examples: int,
    seconds: float,
) -> FuzzReport:
    deadline = time.monotonic() + seconds
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() > deadline:
                report.skipped_for_time += 1
                continue
            _run_operation(
                operation,
                mode,
                report,
                base_url=base_url,
                headers=headers,
                path_parameters=path_parameters,
                examples=examples,
            )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base_url")
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--path-parameter", action="append", default=[])
    args = parser.parse_args(argv)
    headers = dict(item.split(": ", 1) for item in args.header)
    path_parameters = dict(item.split("=", 1) for item in args.path_parameter)
    report = fuzz(
        args.base_url,
        headers=headers,
        path_parameters=path_parameters,
        examples=args.examples,
        seconds=args.seconds,
    )
    sys.stdout.write(report.as_json() + "\n")


if __name__ == "__main__":
    main()
