"""The line format's validation: every bad line named, values never echoed."""

import json

import pytest

from workers.audit.lines import (
    MAX_PAYLOAD_CHARS,
    InvalidEventsError,
    cut_payload,
    split_body,
    validate_events,
)

GOOD = {"opType": "Mutation", "createdAt": 1_700_000_000_000}


def test_json_lines_skip_blank_lines_and_keep_line_numbers() -> None:
    body = f"\n{json.dumps(GOOD)}\n\n{json.dumps(GOOD)}\n".encode()
    assert [number for number, _ in split_body(body)] == [2, 4]


def test_a_json_array_is_numbered_by_element() -> None:
    body = json.dumps([GOOD, GOOD, GOOD]).encode()
    assert [number for number, _ in split_body(body)] == [1, 2, 3]
    with pytest.raises(InvalidEventsError, match="must be a JSON array"):
        split_body(b'{"not": "an array"}', json_lines=False)


@pytest.mark.parametrize(
    ("event", "why"),
    [
        ({"createdAt": 1}, "opType: is required"),
        ({**GOOD, "createdAt": "1700000000000"}, "createdAt: Input should be a valid integer"),
        ({**GOOD, "createdAt": -5}, "createdAt: Input should be greater than or equal to 0"),
        ({**GOOD, "requestParams": {"a": 1}}, "requestParams.a: Input should be a valid string"),
        ({**GOOD, "nameHints": "Backup"}, "nameHints: Input should be a valid list"),
        ({**GOOD, "latencyInMillis": 1.5}, "latencyInMillis: Input should be a valid integer"),
        ({**GOOD, "userEmail": "x" * 400}, "userEmail: String should have at most 320"),
        ({**GOOD, "extra": True}, "extra: is not a known key"),
    ],
)
def test_each_problem_is_named_with_its_line(event: dict[str, object], why: str) -> None:
    with pytest.raises(InvalidEventsError) as caught:
        validate_events([(1, GOOD), (2, event)])
    assert caught.value.problems[0][0] == 2
    assert why in caught.value.problems[0][1]
    assert "1700000000000" not in str(caught.value)  # the value sent is never echoed


def test_many_bad_lines_are_summarised() -> None:
    with pytest.raises(InvalidEventsError) as caught:
        validate_events([(n, {"opType": "Q"}) for n in range(1, 31)])
    message = str(caught.value)
    assert message.startswith("30 invalid event line(s), nothing stored: line 1:")
    assert "line 20:" in message and "line 21:" not in message and "and 10 more" in message


def test_bodies_that_are_not_text_or_json() -> None:
    with pytest.raises(InvalidEventsError, match="not UTF-8"):
        split_body(b"\xff\xfe")
    with pytest.raises(InvalidEventsError) as caught:
        split_body(b'{"opType": "Q", "createdAt": 1}\n{oops\n[1,\n')
    assert [number for number, _ in caught.value.problems] == [2, 3]


def test_long_payloads_are_cut_and_say_so() -> None:
    assert cut_payload("short") == "short"
    cut = cut_payload("p" * (MAX_PAYLOAD_CHARS + 10))
    assert len(cut) == MAX_PAYLOAD_CHARS and cut.endswith("[truncated]")
