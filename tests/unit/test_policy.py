"""The polling schedule and the separate retry schedule."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.errors import InvalidArgument
from functions.domain.policy import RETRY_MAX_S, Policy, retry_delay

# ---- polling schedule -----------------------------------------------------------


def test_delays_grow_by_the_multiplier():
    policy = Policy(initial_delay_s=5, multiplier=2, max_delay_s=1000, jitter=0)
    assert [policy.poll_delay(n) for n in range(5)] == [5, 10, 20, 40, 80]


def test_delays_are_capped_at_max_delay():
    policy = Policy(initial_delay_s=5, multiplier=2, max_delay_s=30, jitter=0)
    assert [policy.poll_delay(n) for n in range(6)] == [5, 10, 20, 30, 30, 30]


def test_multiplier_one_keeps_a_fixed_interval():
    policy = Policy(initial_delay_s=7, multiplier=1, max_delay_s=100, jitter=0)
    assert {policy.poll_delay(n) for n in range(50)} == {7}


def test_delays_are_never_below_one_second():
    policy = Policy(initial_delay_s=0.1, multiplier=1, max_delay_s=10, jitter=0)
    assert policy.poll_delay(0) == 1.0


def test_zero_initial_delay_still_backs_off_after_the_first_poll():
    policy = Policy(initial_delay_s=0, multiplier=2, max_delay_s=60, jitter=0)
    assert [policy.poll_delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("polls", [1_000, 1_800, 10_000, 10**6])
def test_very_many_polls_stay_at_max_delay_without_overflowing(polls):
    for policy in (Policy(jitter=0), Policy(initial_delay_s=1, multiplier=10, max_delay_s=1, jitter=0),
                   Policy(initial_delay_s=0, multiplier=1.5, max_delay_s=300, jitter=0)):
        assert policy.poll_delay(polls) == policy.max_delay_s


def test_negative_poll_count_is_treated_as_zero():
    assert Policy(initial_delay_s=5, jitter=0).poll_delay(-3) == 5


@given(st.integers(0, 5000), st.floats(0, 0.5), st.integers(0, 2**32))
def test_jitter_stays_within_its_bounds(polls, jitter, seed):
    policy = Policy(initial_delay_s=3, multiplier=1.5, max_delay_s=120, jitter=jitter)
    plain = Policy(initial_delay_s=3, multiplier=1.5, max_delay_s=120, jitter=0).poll_delay(polls)
    delay = policy.poll_delay(polls, random.Random(seed))
    assert plain * (1 - jitter) - 1e-9 <= delay <= plain * (1 + jitter) + 1e-9


def test_jitter_spreads_delays():
    policy = Policy(initial_delay_s=10, multiplier=1, max_delay_s=10, jitter=0.5)
    rng = random.Random(7)
    delays = {round(policy.poll_delay(0, rng), 6) for _ in range(20)}
    assert len(delays) > 1


def test_the_same_seed_gives_the_same_delay():
    policy = Policy(jitter=0.3)
    assert policy.poll_delay(3, random.Random(1)) == policy.poll_delay(3, random.Random(1))


# ---- validation -------------------------------------------------------------------


def test_none_policy_gives_the_base():
    base = Policy(initial_delay_s=2)
    assert Policy.from_dict(None, base=base) is base


def test_unspecified_fields_come_from_the_base():
    base = Policy(initial_delay_s=2, multiplier=3, max_delay_s=50, cancel_on_deadline=True)
    policy = Policy.from_dict({"max_delay_s": 60}, base=base)
    assert policy == Policy(initial_delay_s=2, multiplier=3, max_delay_s=60, cancel_on_deadline=True)


def test_contract_example_policy_is_accepted():
    raw = {"initial_delay_s": 5, "multiplier": 1.5, "max_delay_s": 300, "deadline_s": 86400,
           "cancel_on_deadline": False}
    policy = Policy.from_dict(raw)
    assert (policy.initial_delay_s, policy.multiplier, policy.max_delay_s, policy.deadline_s) == (5, 1.5, 300, 86400)
    assert policy.cancel_on_deadline is False


def test_integers_are_stored_as_floats():
    assert isinstance(Policy.from_dict({"initial_delay_s": 3}).initial_delay_s, float)


def test_zero_initial_delay_is_accepted():
    assert Policy.from_dict({"initial_delay_s": 0}).initial_delay_s == 0


def test_to_dict_round_trips():
    policy = Policy(initial_delay_s=1, multiplier=2, max_delay_s=9, deadline_s=100, cancel_on_deadline=True, jitter=0)
    assert Policy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize("raw", [
    {"initial_delay_s": -1},
    {"initial_delay_s": 86401},
    {"multiplier": 0.5},
    {"multiplier": 11},
    {"max_delay_s": 0},
    {"max_delay_s": -5},
    {"deadline_s": 0},
    {"deadline_s": 31 * 86400},
    {"jitter": -0.1},
    {"jitter": 0.9},
    {"initial_delay_s": True},
    {"multiplier": False},
    {"max_delay_s": float("nan")},
    {"deadline_s": float("inf")},
    {"initial_delay_s": float("-inf")},
    {"initial_delay_s": "5"},
    {"multiplier": None},
    {"max_delay_s": [60]},
    {"max_delay_s": {"s": 60}},
    {"cancel_on_deadline": "true"},
    {"cancel_on_deadline": 1},
    {"cancel_on_deadline": None},
    {"initial_delay": 5},
    {"poll_every": 5},
    {"initial_delay_s": 5, "extra": True},
    {"initial_delay_s": 200, "max_delay_s": 100},
    {"initial_delay_s": 300},  # above the base's max_delay_s (120)
])
def test_bad_policy_values_are_refused(raw):
    with pytest.raises(InvalidArgument):
        Policy.from_dict(raw)


@pytest.mark.parametrize("raw", ["fast", 5, [1, 2], True])
def test_policy_that_is_not_an_object_is_refused(raw):
    with pytest.raises(InvalidArgument, match="object"):
        Policy.from_dict(raw)


def test_unknown_policy_fields_are_named_in_the_error():
    with pytest.raises(InvalidArgument, match="bogus"):
        Policy.from_dict({"bogus": 1})


def test_initial_equal_to_max_is_accepted():
    assert Policy.from_dict({"initial_delay_s": 60, "max_delay_s": 60}).max_delay_s == 60


# ---- retry schedule --------------------------------------------------------------


class _Mid(random.Random):
    """An rng whose uniform() always returns the midpoint: no jitter."""

    def uniform(self, a, b):
        return (a + b) / 2


def test_retry_delay_doubles_per_consecutive_error():
    assert [retry_delay(n, rng=_Mid()) for n in range(1, 7)] == [1, 2, 4, 8, 16, 32]


def test_retry_delay_is_capped():
    assert retry_delay(7, rng=_Mid()) == RETRY_MAX_S
    assert retry_delay(500, rng=_Mid()) == RETRY_MAX_S


def test_retry_delay_for_zero_errors_is_the_base():
    assert retry_delay(0, rng=_Mid()) == 1


@given(st.integers(1, 40), st.integers(0, 2**32))
def test_retry_jitter_is_within_twenty_percent(errors, seed):
    nominal = min(2 ** (errors - 1), RETRY_MAX_S)
    delay = retry_delay(errors, rng=random.Random(seed))
    assert nominal * 0.8 - 1e-9 <= delay <= nominal * 1.2 + 1e-9


def test_retry_after_wins_when_longer():
    assert retry_delay(1, retry_after_s=30, rng=_Mid()) == 30


def test_retry_after_shorter_than_the_backoff_is_ignored():
    assert retry_delay(5, retry_after_s=2, rng=_Mid()) == 16


def test_retry_after_is_capped_at_an_hour():
    assert retry_delay(1, retry_after_s=10**9, rng=_Mid()) == 3600


@pytest.mark.parametrize("retry_after", [-5, float("nan")])
def test_nonsense_retry_after_falls_back_to_the_backoff(retry_after):
    delay = retry_delay(3, retry_after_s=retry_after, rng=_Mid())
    assert delay == 4 and not math.isnan(delay)


def test_retry_schedule_is_shorter_than_the_polling_schedule_at_first():
    assert retry_delay(1, rng=_Mid()) < Policy(jitter=0).poll_delay(0)
