"""Validation at the edge: text that PostgreSQL can store and a person can read, before anything
reaches the database.

PostgreSQL refuses NUL in text and JSONB, a lone UTF-16 surrogate cannot be encoded as UTF-8, and
a string longer than its `VARCHAR(n)` column fails the INSERT: each of those would otherwise end in
a 500 after the request was accepted. Control characters are refused too: nothing a shopper, an
operator or a provider sends legitimately contains them, and they make logs and back-office screens
lie.

- `Text(max_length)`: the one pydantic type for request text (bodies and query parameters).
- `text_problem(value, max_length)`: the same rule for values that do not go through pydantic
  (webhook fields, the payer's return).
- `plain_query_parameters`: a route dependency holding every query parameter, declared or not, to
  the same rule (the payer's return reads parameters each provider names differently).
- `load_json_object(text)` and `json_problem(value)`: JSON with a bounded depth, no NaN or
  Infinity, no NUL and no lone surrogate anywhere, so that it can be kept as JSONB.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# C0 controls, DEL, C1 controls and the UTF-16 surrogates (which only a lone, invalid one can be).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same, with tab, line feed and carriage return allowed (multi-line text such as a description).
_FORBIDDEN_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# What the OpenAPI document states, so that generated clients (and fuzzers) know the rule.
_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
_PATTERN_MULTILINE = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
# JSON that cannot be stored as JSONB: NUL, and a surrogate that is not part of a pair.
_UNSTORABLE_IN_JSON = re.compile(r"[\x00\ud800-\udfff]")

MAX_JSON_DEPTH = 32
MAX_QUERY_PARAMETERS = 32
MAX_QUERY_NAME_LENGTH = 64
MAX_QUERY_VALUE_LENGTH = 512


def forbidden_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character of `value` that text may not contain, or None."""
    match = (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN).search(value)
    return match.group() if match else None


def text_problem(value: str, max_length: int, *, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text of at most `max_length` characters; None when it is."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    bad = forbidden_character(value, multiline=multiline)
    if bad is not None:
        return f"contains the control character U+{ord(bad):04X}"
    return None


@dataclass(frozen=True)
class Text:
    """Request text: at most `max_length` characters (its column's), no NUL, no control character,
    no lone surrogate. `multiline` allows tab, line feed and carriage return.

    Use as `Annotated[str, Text(200)]`; combine with `Field` for a description or a minimum length
    (`min_length` here counts after the model's whitespace stripping, as `Field`'s does).
    """

    max_length: int
    min_length: int | None = None
    multiline: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = core_schema.str_schema(max_length=self.max_length, min_length=self.min_length)
        return core_schema.no_info_after_validator_function(self._check, inner)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = _PATTERN_MULTILINE if self.multiline else _PATTERN
        return json_schema

    def _check(self, value: str) -> str:
        bad = forbidden_character(value, multiline=self.multiline)
        if bad is not None:
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found U+{code})",
                {"code": f"{ord(bad):04X}"},
            )
        return value


def plain_query_parameters(request: Request) -> None:
    """Dependency: 422 `validation_error` unless the query has at most MAX_QUERY_PARAMETERS
    parameters whose names and values are text of bounded length without control characters."""
    items = request.query_params.multi_items()
    errors: list[dict[str, Any]] = []
    if len(items) > MAX_QUERY_PARAMETERS:
        errors.append(
            {
                "type": "too_many_parameters",
                "loc": ("query",),
                "msg": f"at most {MAX_QUERY_PARAMETERS} query parameters are accepted",
            }
        )
    for name, value in items[:MAX_QUERY_PARAMETERS]:
        problem = text_problem(name, MAX_QUERY_NAME_LENGTH) or text_problem(value, MAX_QUERY_VALUE_LENGTH)
        if problem is not None:
            shown = name if forbidden_character(name) is None else repr(name)[1:-1]
            errors.append(
                {"type": "plain_text", "loc": ("query", shown[:MAX_QUERY_NAME_LENGTH]), "msg": problem}
            )
    if errors:
        raise RequestValidationError(errors)


class UnsafeJson(ValueError):
    """JSON that is not valid, or that could not be stored as JSONB; the message is safe to log."""


def _refuse_constant(name: str) -> Any:
    raise UnsafeJson(f"JSON contains {name}")


def load_json_object(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a JSON object that can be stored as JSONB. Raises UnsafeJson.

    Refused: anything that is not JSON or not an object, NaN and Infinity (not JSON, though Python
    reads them), nesting deeper than `max_depth` (a deep document exhausts the parser's recursion
    long before the body size limit), NUL and lone surrogates in any string or key.
    """
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise UnsafeJson("JSON is nested too deeply") from None
    except UnsafeJson:
        raise
    except ValueError:
        raise UnsafeJson("body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise UnsafeJson("JSON body is not an object")
    problem = json_problem(parsed, max_depth=max_depth)
    if problem is not None:
        raise UnsafeJson(problem)
    return parsed


_UNSTORABLE_TEXT = "JSON contains NUL or an unpaired surrogate"


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` (parsed JSON, or a dict of form fields) cannot be stored as JSONB; None when it can.

    Walks iteratively, so a deep value costs no recursion.
    """
    if type(value) is dict and max_depth >= 1:
        # A flat object of strings (every form body) in one search: a surrogate in a Python string
        # is always unpaired, and joining the strings neither makes nor hides one.
        try:
            flat = "\x01".join([*value, *value.values()])
        except TypeError:
            pass  # a value that is not a string (or a key that is not): walk it
        else:
            return _UNSTORABLE_TEXT if _UNSTORABLE_IN_JSON.search(flat) else None
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE_IN_JSON.search(item):
                return _UNSTORABLE_TEXT
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "JSON contains a number out of range"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"JSON is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str) or _UNSTORABLE_IN_JSON.search(key):
                        return _UNSTORABLE_TEXT
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)
    return None
