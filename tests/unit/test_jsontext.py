"""Bounded JSON parsing: depth measured without recursion, before the parser runs."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from functions.domain import jsontext
from functions.domain.jsontext import JsonNotText, JsonTooDeep, loads, nesting_depth


def test_deep_nesting_is_refused_before_parsing_never_a_recursion_error():
    with pytest.raises(JsonTooDeep, match="20000 levels deep"):
        loads(b"[" * 20_000 + b"]" * 20_000)


def test_nesting_up_to_the_limit_is_parsed():
    deep = "[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH
    assert loads(deep) is not None
    with pytest.raises(JsonTooDeep):
        loads("[" + deep + "]")


def test_text_with_few_brackets_is_parsed_and_a_deep_one_with_many_still_refused():
    few = "[" * 10 + '"' + "{" * 80 + '"' + "]" * 10  # 90 openers, strings' included: not measured
    assert loads(few) is not None
    deep = "[" * 101 + "]" * 101  # 101 openers: measured, and refused
    with pytest.raises(JsonTooDeep):
        loads(deep, max_depth=100)


def test_brackets_inside_strings_do_not_count():
    assert nesting_depth(b'{"a": "[[[[{{{{\\"[[[["}') == 1
    assert loads('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}


def test_an_unterminated_string_counts_what_follows_so_it_can_only_overestimate():
    assert nesting_depth(b'["abc, [[[') == 4


@pytest.mark.parametrize("raw", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_are_not_json(raw):
    with pytest.raises(ValueError):
        loads(raw)


def test_lone_surrogates_are_refused_only_when_text_is_required():
    raw = '{"name": "a\\ud800b"}'
    assert loads(raw) == {"name": "a\ud800b"}
    with pytest.raises(JsonNotText):
        loads(raw, text_only=True)
    assert loads('{"k": "\\ud83d\\ude00"}', text_only=True) == {"k": "\U0001F600"}  # a pair is fine


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3), max_leaves=30))
def test_the_measured_depth_never_underestimates_what_the_parser_meets(value):
    import json

    def depth(v):
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert nesting_depth(json.dumps(value).encode()) == depth(value)
