"""Rate limits per (service, quota project): parsing, token buckets, AIMD on 429."""
from __future__ import annotations

import pytest

from functions.config import Settings
from functions.domain.errors import ConfigError, InvalidArgument
from functions.domain.ratelimit import AimdBucket, Limit, RateLimiter, parse_limits, with_defaults


def test_limits_are_read_per_second_minute_or_hour_for_a_service_or_one_quota_project():
    assert parse_limits("documentai=1800/min, vision@my-project=10/s,speech=3600/h") == (
        Limit("documentai.googleapis.com", 30.0), Limit("vision.googleapis.com", 10.0, "my-project"),
        Limit("speech.googleapis.com", 1.0))


@pytest.mark.parametrize("text", ["documentai", "documentai=fast", "documentai=10/day", "documentai=0/s",
                                  "Document AI=1/s"])
def test_a_malformed_limit_is_refused_naming_it(text):
    with pytest.raises(InvalidArgument, match="rate limit"):
        parse_limits(text)


def test_the_setting_is_lro_rate_limits_and_a_bad_one_stops_start_up():
    assert Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "LRO_RATE_LIMITS": "documentai=60/min"}).rate_limits \
        == (Limit("documentai.googleapis.com", 1.0),)
    with pytest.raises(ConfigError, match="LRO_RATE_LIMITS"):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "LRO_RATE_LIMITS": "documentai=lots"})


def test_published_quotas_are_the_defaults_and_configured_limits_replace_them():
    table = with_defaults(parse_limits("documentai=600/min"))
    assert table[("documentai.googleapis.com", None)] == 10.0
    assert table[("vision.googleapis.com", None)] == 30.0


def test_a_local_stand_in_has_no_published_quotas_only_configured_limits():
    assert with_defaults(parse_limits("vision=1/s"), published=False) == {("vision.googleapis.com", None): 1.0}


def test_a_bucket_lets_a_seconds_worth_through_then_one_per_interval():
    bucket = AimdBucket(10.0, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(20)) == 10
    assert not bucket.take(0.05) and bucket.take(0.1)
    assert bucket.wait_s(0.1) == pytest.approx(0.1)


def test_a_429_halves_the_rate_once_per_second_and_it_recovers_a_tenth_a_second():
    bucket = AimdBucket(10.0, now=0.0)
    bucket.throttled(0.0)
    bucket.throttled(0.2)  # the GETs in flight answer 429 together: one cut
    assert bucket.rate == 5.0
    bucket.take(3.0)  # 2 s past the cool-down: +1/s each second of it
    assert bucket.rate == pytest.approx(7.0)
    bucket.take(100.0)
    assert bucket.rate == 10.0  # never past the limit


def test_a_run_holding_some_shards_takes_its_share_of_each_limit_and_unlimited_services_pass():
    limiter = RateLimiter(with_defaults(()), share=0.25, now=0.0)
    key = limiter.key("documentai.googleapis.com", None)
    assert sum(limiter.take(key, 0.0) for _ in range(100)) == 7  # 30/s x 1/4, a second's worth
    assert limiter.key("speech.googleapis.com", None) is None and limiter.take(None, 0.0)


def test_a_quota_project_with_its_own_limit_has_its_own_bucket():
    limiter = RateLimiter(with_defaults(parse_limits("documentai@billing-1=2/s")), share=1.0, now=0.0)
    assert limiter.key("documentai", "billing-1") == ("documentai.googleapis.com", "billing-1")
    assert limiter.key("documentai", "other") == ("documentai.googleapis.com", None)
