"""The edge's rules on text and JSON (app/validation.py), the webhook verifiers' use of them, and
the inbox's own check before a verified delivery is recorded (app/payments/intake.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, ValidationError

from app.catalog.schemas import ProductUpsert
from app.models import Order, Product, ProviderEvent, Refund
from app.orders.schemas import AddressIn, CustomerIn
from app.payments import intake
from app.payments.schemas import RefundCreate
from app.providers.base import WebhookHint, WebhookMalformed, WebhookRejected, WebhookRequest
from app.providers.fintecture.webhooks import MAX_REQUEST_ID_LENGTH, verify_webhook
from app.validation import Text, UnsafeJson, json_problem, load_json_object, text_problem
from tests.support.fintecture import build_delivery

APP_ID = "shop"
NOW = datetime(2026, 11, 21, 4, 58, 45, tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: Annotated[str, Text(10, min_length=1)]
    notes: Annotated[str, Text(40, multiline=True)] = ""


@pytest.mark.parametrize(
    "value", ["a\x00b", "a\x01", "tab\there", "line\nbreak", "a\x7f", "a\x9bb", "a\ud800b", "x" * 11, "  "]
)
def test_text_refuses_control_characters_surrogates_and_overlong_values(value: str) -> None:
    with pytest.raises(ValidationError):
        _Model(name=value)


@pytest.mark.parametrize("value", ["Zoë", "😀 ok", "Ó'Brien", "中文", "a b-c.d"])
def test_text_accepts_printable_unicode(value: str) -> None:
    assert _Model(name=value).name == value


def test_multiline_text_accepts_tabs_and_line_breaks_only() -> None:
    assert _Model(name="n", notes="one\ntwo\r\n\tthree").notes == "one\ntwo\r\n\tthree"
    with pytest.raises(ValidationError) as info:
        _Model(name="n", notes="one\x00two")
    assert info.value.errors()[0]["type"] == "control_character"


def test_text_states_its_rule_in_the_json_schema() -> None:
    properties = _Model.model_json_schema()["properties"]
    assert properties["name"]["maxLength"] == 10
    assert properties["name"]["pattern"].startswith("^[^\\u0000-\\u001f")


def _length(column: Any) -> int:
    return int(column.type.length)


def test_request_text_never_exceeds_its_column() -> None:
    """Each limit is its column's: a longer value would fail the INSERT after validation."""

    def max_length(model: type[BaseModel], field: str) -> int:
        schema = model.model_json_schema()["properties"][field]
        options = schema.get("anyOf", [schema])
        return max(int(option["maxLength"]) for option in options if "maxLength" in option)

    assert max_length(CustomerIn, "name") == _length(Order.customer_name)
    assert max_length(CustomerIn, "company") == _length(Order.customer_company)
    assert max_length(CustomerIn, "phone") == _length(Order.customer_phone)
    assert max_length(CustomerIn, "email") == _length(Order.customer_email)
    assert max_length(ProductUpsert, "name") == _length(Product.name)
    assert max_length(RefundCreate, "reason") == _length(Refund.reason)
    assert max_length(AddressIn, "street") <= 200  # kept in a JSONB column, bounded all the same


def test_text_problem_names_the_first_problem() -> None:
    assert text_problem("fine", 10) is None
    assert text_problem("x" * 11, 10) == "is longer than 10 characters"
    assert text_problem("a\x00", 10) == "contains the control character U+0000"
    assert text_problem("a\nb", 10, multiline=True) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1, 2]", "not an object"),
        ("{nope", "not valid JSON"),
        ('{"a": NaN}', "NaN"),
        ('{"a": -Infinity}', "Infinity"),
        ('{"a": 1e400}', "out of range"),
        ('{"a": "x\\u0000y"}', "NUL"),
        ('{"a\\u0000": 1}', "NUL"),
        ('{"a": "\\ud800"}', "surrogate"),
        ('{"a": ["\\udc00"]}', "surrogate"),
        ('{"a": ' + "[" * 20_000 + "]" * 20_000 + "}", "nested too deeply"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "deeper than 32"),
    ],
)
def test_json_that_jsonb_cannot_hold_is_refused(text: str, reason: str) -> None:
    with pytest.raises(UnsafeJson) as info:
        load_json_object(text)
    assert reason in str(info.value)


def test_json_that_jsonb_holds_is_returned() -> None:
    text = '{"a": "\\ud83d\\ude00 \\n", "b": [1, 2.5, null, true], "c": {"d": "Zoë"}}'
    assert load_json_object(text) == json.loads(text)
    assert json_problem({"nested": [[[[1]]]]}, max_depth=5) is None
    assert json_problem({"nested": [[[[1]]]]}, max_depth=4) is not None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"a": "b", "c": "d"}, None),
        ({}, None),
        ({"a": "b", "c": "x\x00"}, "NUL"),
        ({"a\x00": "b"}, "NUL"),
        ({"a": "\udbff", "b": "\udc00"}, "surrogate"),  # two strings never make one pair
        ({"a": "b", "c": 1.5}, None),
        ({"a": "b", "c": float("nan")}, "out of range"),
        ({"a": "b", "c": ["\x00"]}, "NUL"),
    ],
)
def test_flat_objects_of_strings_are_checked_like_any_other(
    fields: dict[str, Any], problem: str | None
) -> None:
    found = json_problem(fields)
    assert found is None if problem is None else problem in (found or "")


# --- Fintecture's verifier: authentic deliveries whose content cannot be stored -----------------


@pytest.fixture(scope="module")
def large_key() -> rsa.RSAPrivateKey:
    # A 4096-bit key leaves room in one RSA block for a request id past the inbox's 128 characters.
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


def _verify(key: rsa.RSAPrivateKey, body: bytes, **options: Any) -> WebhookHint:
    headers = build_delivery(
        key.public_key(), body, date=NOW, key_id=APP_ID, **{"request_id": "r-1", **options}
    )
    return verify_webhook(
        WebhookRequest("POST", "/webhook", headers, body),
        private_key=key,
        app_id=APP_ID,
        now=NOW,
        tolerance_seconds=300,
    )


def test_a_request_id_longer_than_the_inbox_column_is_malformed(large_key: rsa.RSAPrivateKey) -> None:
    assert _length(ProviderEvent.delivery_id) == MAX_REQUEST_ID_LENGTH
    body = b"session_id=abc&status=payment_created"
    assert _verify(large_key, body, request_id="r" * 128).delivery_id == "r" * 128
    with pytest.raises(WebhookMalformed) as info:
        _verify(large_key, body, request_id="r" * 129)
    assert info.value.reason == "X-Request-ID is longer than 128 characters"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"session_id=abc&note=a%00b", "application/x-www-form-urlencoded", "form body contains NUL"),
        (b'{"session_id": "abc", "n": NaN}', "application/json", "JSON contains NaN"),
        (b'{"session_id": "abc", "n": "\\u0000"}', "application/json", "NUL"),
        (b'{"session_id": "\\ud800"}', "application/json", "surrogate"),
        (b'{"d": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "application/json", "nested too deeply"),
        (b"\xff\xfe", "application/json", "not UTF-8"),
    ],
)
def test_verified_bodies_that_cannot_be_stored_are_malformed(
    large_key: rsa.RSAPrivateKey, body: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(WebhookMalformed) as info:
        _verify(large_key, body, content_type=content_type)
    assert reason in info.value.reason


def test_an_oversized_signature_header_is_refused_before_it_is_parsed(large_key: rsa.RSAPrivateKey) -> None:
    body = b"session_id=abc"
    headers = build_delivery(large_key.public_key(), body, date=NOW, request_id="r-1", key_id=APP_ID)
    # Parsing this would fail too ("malformed"); the length is what must refuse it first.
    headers["Signature"] = "(" * 8 * 1024 * 1024
    with pytest.raises(WebhookRejected) as info:
        verify_webhook(
            WebhookRequest("POST", "/webhook", headers, body),
            private_key=large_key,
            app_id=APP_ID,
            now=NOW,
            tolerance_seconds=300,
        )
    assert info.value.reason == "Signature header is too long"
    assert not isinstance(info.value, WebhookMalformed)


# --- The inbox's check, whatever the provider -----------------------------------------------------


def _hint(**changes: Any) -> WebhookHint:
    values: dict[str, Any] = {
        "delivery_id": "d-1",
        "provider_session_id": "s-1",
        "event_type": "payment.updated",
        "content_type": "application/json",
        "payload": {"id": 1},
    }
    values.update(changes)
    return WebhookHint(**values)


def test_a_hint_that_fits_the_inbox_passes() -> None:
    intake.check_storable(_hint())
    intake.check_storable(_hint(provider_session_id=None, event_type=None, content_type=None))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"delivery_id": "d" * 129}, "delivery id is longer than 128 characters"),
        ({"provider_session_id": "s" * 129}, "payment id is longer than 128 characters"),
        ({"event_type": "e" * 129}, "event type is longer than 128 characters"),
        ({"content_type": "c" * 129}, "Content-Type is longer than 128 characters"),
        ({"provider_session_id": "s\x00"}, "payment id contains the control character U+0000"),
        ({"event_type": "e\n"}, "event type contains the control character U+000A"),
        ({"payload": {"a": "\x00"}}, "JSON contains NUL or an unpaired surrogate"),
        ({"payload": {"a": float("nan")}}, "JSON contains a number out of range"),
    ],
)
def test_a_hint_the_inbox_cannot_store_is_malformed(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(WebhookMalformed) as info:
        intake.check_storable(_hint(**changes))
    assert info.value.reason == reason
