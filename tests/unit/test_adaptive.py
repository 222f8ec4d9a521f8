import json
import random

import pytest
from hypothesis import given, strategies as st

from functions.domain import adaptive
from functions.domain.adaptive import DurationStats, first_poll_delay, next_delay, observed_duration
from functions.domain.policy import Policy
from tests.unit.factories import lognormal, stats_of

POLICY = Policy(initial_delay_s=5.0, multiplier=1.5, max_delay_s=120.0, jitter=0.0)



def test_quantiles_are_within_one_bucket_of_the_exact_ones():
    durations = lognormal(2000, 300.0)
    stats = stats_of(durations)
    ordered = sorted(durations)
    width = 2 ** (1 / adaptive.BUCKETS_PER_DOUBLING)
    for q in (0.1, 0.25, 0.5, 0.9):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert exact / width <= stats.quantile(q) <= exact * width


def test_an_empty_summary_has_no_quantile():
    assert DurationStats().quantile(0.5) is None


def test_merge_equals_adding_everything_to_one_summary():
    a, b = lognormal(300, 60.0, seed=1), lognormal(500, 600.0, seed=2)
    merged = stats_of(a).merge(stats_of(b))
    assert merged == stats_of(a + b)
    assert stats_of(b).merge(stats_of(a)) == merged


def test_summary_round_trips_through_json_and_stays_small():
    stats = stats_of(lognormal(5000, 30.0, sigma=1.5))
    raw = json.loads(json.dumps(stats.to_dict()))
    assert DurationStats.from_dict(raw) == stats
    assert len(json.dumps(raw)) < 2000


def test_from_dict_drops_malformed_entries():
    stats = DurationStats.from_dict({"count": 99, "buckets": {"4": 3, "x": 5, "5": -1, "6": True, "7": 2.5}})
    assert stats.buckets == {4: 3} and stats.count == 3
    assert DurationStats.from_dict(None) == DurationStats()
    assert DurationStats.from_dict("garbage") == DurationStats()


def test_counts_are_halved_past_the_cap_keeping_the_shape():
    stats = stats_of([10.0] * 6000 + [1000.0] * 6000)
    assert stats.count <= adaptive.MAX_COUNT
    assert stats.quantile(0.25) < 20 < 500 < stats.quantile(0.75)


def test_negative_or_nan_durations_are_ignored():
    stats = DurationStats().add(-1).add(float("nan"))
    assert stats.count == 0


def test_without_enough_data_the_policy_is_used_unchanged():
    few = stats_of([100.0] * (adaptive.MIN_SAMPLES - 1))
    assert first_poll_delay(None, POLICY) == first_poll_delay(few, POLICY) == POLICY.initial_delay_s
    for polls in range(6):
        assert next_delay(few, 10.0, polls, POLICY) == pytest.approx(POLICY.poll_delay(polls))


def test_first_poll_lands_near_the_expected_finish():
    stats = stats_of(lognormal(500, 60.0))
    delay = first_poll_delay(stats, POLICY)
    assert stats.quantile(0.05) <= delay <= stats.quantile(0.3)


def test_first_poll_never_beyond_max_delay_nor_before_initial_delay():
    assert first_poll_delay(stats_of(lognormal(500, 3600.0)), POLICY) == POLICY.max_delay_s
    assert first_poll_delay(stats_of(lognormal(500, 2.0)), POLICY) == POLICY.initial_delay_s


def test_polls_are_dense_inside_the_likely_window_and_sparse_outside():
    stats = stats_of(lognormal(1000, 600.0))
    dense = next_delay(stats, 600.0, 5, POLICY)
    assert dense == pytest.approx(adaptive.dense_delay(stats, POLICY)) and dense <= adaptive.DENSE_MAX_S
    assert next_delay(stats, 5000.0, 30, POLICY) > dense  # well past the window: spacing widens
    start = adaptive.dense_stretches(stats, POLICY)[0][0]
    early = next_delay(stats, 20.0, 2, POLICY)
    assert early <= start - 20.0  # the ramp does not jump over the first dense stretch


def _late_share(durations: list[float], stats, policy: Policy) -> float:
    """Share of `durations` that the schedule (unjittered) sees later than DENSE_MAX_S after they end."""
    late = 0
    for d in durations:
        t, polls = first_poll_delay(stats, policy), 0
        while t < d:
            polls += 1
            t += next_delay(stats, t, polls, policy)
        late += t - d > adaptive.DENSE_MAX_S
    return late / len(durations)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0])
def test_sparse_stretches_leave_at_most_the_promised_share_of_finishes_to_be_seen_late(sigma):
    durations = lognormal(1000, 600.0, sigma=sigma, seed=4)
    stats = stats_of(durations)
    assert _late_share(durations, stats, POLICY) <= 1 - adaptive.LAG_SHARE


def test_a_wide_kind_leaves_its_least_likely_stretch_sparse_and_saves_polls():
    """Log-uniform 3 s..3 h: finishing is least likely per poll late in life, so that is left sparse."""
    rng = random.Random(5)
    durations = [3.0 * 3600 ** rng.random() for _ in range(2000)]
    stats = stats_of(durations)
    stretches = adaptive.dense_stretches(stats, POLICY)
    assert len(stretches) >= 2 or stretches[-1][1] < max(durations)
    assert 0 < _late_share(durations, stats, POLICY) <= 1 - adaptive.LAG_SHARE
    widest = max(zip(stretches, stretches[1:]), key=lambda pair: pair[1][0] - pair[0][1])
    inside_gap = widest[0][1] + 1.0
    assert widest[1][0] - inside_gap > 2 * adaptive.DENSE_MAX_S
    assert next_delay(stats, inside_gap, 500, POLICY) > adaptive.dense_delay(stats, POLICY)


def test_a_small_sample_spends_no_late_share():
    durations = lognormal(adaptive.MIN_SAMPLES, 600.0, seed=6)
    stats = stats_of(durations)
    assert _late_share(durations, stats, POLICY) == 0  # only empty buckets between finishes are sparse


def test_jitter_never_lengthens_a_delay_nor_jitters_a_dense_stretch():
    stats = stats_of(lognormal(2000, 600.0))
    policy = Policy(initial_delay_s=5.0, multiplier=1.5, max_delay_s=120.0, jitter=0.3)
    start, end = adaptive.dense_stretches(stats, policy)[0]
    rng = random.Random(7)
    for _ in range(200):
        assert next_delay(stats, (start + end) / 2, 9, policy, rng) == adaptive.dense_delay(stats, policy)
        assert next_delay(stats, start - 30.0, 9, policy, rng) <= 30.0  # lands on the stretch, never past it
    assert len({next_delay(stats, 10.0, 1, policy, rng) for _ in range(20)}) > 1  # the ramp is jittered


def test_count_below_interpolates_inside_a_bucket():
    stats = stats_of([100.0] * 10)
    lo, hi, _ = stats.bins()[0]
    assert stats.count_below(lo) == 0 and stats.count_below(hi) == 10
    assert 0 < stats.count_below((lo * hi) ** 0.5) == pytest.approx(5)


def test_no_delay_ever_exceeds_max_delay_or_drops_below_one_second():
    policy = Policy(initial_delay_s=0.0, multiplier=2.0, max_delay_s=30.0, jitter=0.5)
    stats = stats_of(lognormal(500, 3600.0, sigma=1.0))
    rng = random.Random(3)
    for elapsed in (0, 1, 10, 100, 1000, 5000, 50000, 10**6):
        for polls in (0, 1, 5, 50, 5000):
            assert 0.5 <= next_delay(stats, elapsed, polls, policy, rng) <= 30.0 * 1.5


def test_observed_duration_is_the_midpoint_between_the_last_running_and_the_done_poll():
    assert observed_duration(100.0, 160.0, 180.0) == 70.0
    assert observed_duration(100.0, None, 110.0) == 5.0
    assert observed_duration(100.0, 90.0, 100.0) == 0.0


def test_stats_key_is_document_id_safe():
    key = adaptive.stats_key("documentai.googleapis.com", "type.googleapis.com/x.BatchProcessMetadata", "us")
    assert "/" not in key and key.count("~") == 2


# ---------------------------------------------------------------- steered by progress

def test_polls_planned_before_the_soonest_end_progress_allows_are_skipped_up_to_max_delay():
    stats = stats_of(lognormal(200, 600.0))
    assert adaptive.steered_delay(15.0, 60.0, stats, POLICY) == 60.0
    assert adaptive.steered_delay(15.0, 5000.0, stats, POLICY) == POLICY.max_delay_s
    # Never sooner than the plan when the end is further off than it.
    assert adaptive.steered_delay(90.0, 100.0, stats, POLICY) == 100.0


def test_a_gap_planned_past_the_soonest_end_lands_on_it_then_polls_go_dense():
    stats = stats_of(lognormal(200, 600.0))
    dense = adaptive.dense_delay(stats, POLICY)
    assert adaptive.steered_delay(120.0, 40.0, stats, POLICY) == 40.0
    assert adaptive.steered_delay(120.0, 2.0, stats, POLICY) == dense
    assert adaptive.steered_delay(5.0, 2.0, stats, POLICY) == 5.0  # never later than the plan here


def test_without_history_progress_steers_the_policy_ramp_with_the_dense_ceiling():
    assert adaptive.steered_delay(60.0, 0.5, None, POLICY) == adaptive.DENSE_MAX_S
    tight = Policy(initial_delay_s=1.0, multiplier=1.0, max_delay_s=10.0, jitter=0.0)
    assert adaptive.steered_delay(1.0, 500.0, None, tight) == 10.0
    assert adaptive.steered_delay(10.0, 0.5, None, tight) == 10.0


def test_a_skip_is_jittered_shorter_never_longer():
    stats, rng = stats_of(lognormal(200, 600.0)), random.Random(4)
    jittered = Policy(max_delay_s=120.0, jitter=0.2)
    delays = {adaptive.steered_delay(15.0, 500.0, stats, jittered, rng) for _ in range(50)}
    assert len(delays) > 1 and all(15.0 <= d <= 120.0 for d in delays)


def test_a_kind_whose_finishes_keep_coming_before_the_soonest_end_is_no_longer_steered():
    stats = stats_of(lognormal(200, 600.0))
    for early in [True] * 5 + [False] * 95:
        stats.add_progress_end(early)
    assert adaptive.trusts_progress(stats)  # 5 of 100: the share the lag promise leaves late
    assert adaptive.steered_delay(15.0, 500.0, stats, POLICY) == POLICY.max_delay_s
    stats.add_progress_end(True)
    assert not adaptive.trusts_progress(stats)
    assert adaptive.steered_delay(15.0, 500.0, stats, POLICY) == 15.0
    assert adaptive.steered_delay(120.0, 2.0, stats, POLICY) == 120.0
    few = DurationStats()
    for _ in range(adaptive.PROGRESS_EARLY_MIN - 1):
        few.add_progress_end(True)
    assert adaptive.trusts_progress(few) and adaptive.trusts_progress(None)


def test_a_finish_came_early_when_its_poll_was_due_by_the_soonest_end_after_a_gap_it_could_be_late_in():
    assert adaptive.came_early(due_s=200.0, soonest_s=200.0, gap_s=60.0)
    assert not adaptive.came_early(due_s=201.0, soonest_s=200.0, gap_s=60.0)  # due after it: ended after it
    assert not adaptive.came_early(due_s=150.0, soonest_s=200.0, gap_s=adaptive.DENSE_MAX_S)  # seen in time


def test_progress_finishes_round_trip_merge_and_survive_malformed_documents():
    stats = stats_of([100.0] * 10).add_progress_end(True).add_progress_end(False)
    raw = json.loads(json.dumps(stats.to_dict()))
    assert DurationStats.from_dict(raw) == stats
    merged = stats.merge(stats)
    assert (merged.progress_ends, merged.progress_early) == (4, 2)
    assert "progress_ends" not in stats_of([100.0]).to_dict()
    for ends, early, kept in ((3, 9, (3, 3)), (-1, 0, (0, 0)), (True, 1, (0, 0)), ("4", 2, (0, 0)), (5, 2.5, (5, 0))):
        parsed = DurationStats.from_dict({"count": 1, "buckets": {"4": 1}, "progress_ends": ends, "progress_early": early})
        assert (parsed.progress_ends, parsed.progress_early) == kept


@given(planned=st.floats(1.0, 120.0), soonest=st.floats(0.0, 1e7), median=st.sampled_from([5.0, 600.0, 20000.0]),
       jitter=st.sampled_from([0.0, 0.1, 0.5]), known=st.booleans())
def test_steering_keeps_every_delay_within_the_policy_and_on_the_side_of_the_plan_progress_says(
        planned, soonest, median, jitter, known):
    policy = Policy(max_delay_s=120.0, jitter=jitter)
    stats = stats_of(lognormal(50, median)) if known else None
    delay = adaptive.steered_delay(planned, soonest, stats, policy, random.Random(0))
    assert 1.0 <= delay <= policy.max_delay_s
    if soonest >= planned:
        assert delay >= planned  # progress says nothing ends before the plan's poll: never sooner
    else:
        assert delay <= planned  # it may end before the plan's poll: never later


def test_once_enough_finishes_are_scored_the_soonest_end_is_scaled_by_their_low_quantile():
    stats = stats_of(lognormal(200, 600.0))
    for _ in range(adaptive.CALIBRATION_MIN - 1):
        stats.add_progress_score(0.5)
    assert not stats.calibrated and stats.calibration() == 1.0
    assert adaptive.steered_delay(15.0, 100.0, stats, POLICY) == 100.0
    stats.add_progress_score(0.5)
    assert stats.calibrated
    assert stats.calibration() == pytest.approx(0.5, rel=0.2)  # a bucket's lower edge: never above the scores
    assert stats.calibration() <= 0.5
    assert adaptive.steered_delay(15.0, 100.0, stats, POLICY) == pytest.approx(100.0 * stats.calibration())


def test_the_calibration_takes_the_low_tail_and_never_stretches_the_soonest_end():
    stats = DurationStats()
    for score in [0.1] + [3.0] * 99:
        stats.add_progress_score(score)
    assert stats.calibration() == 1.0  # 1 in 100 below 1: under CALIBRATION_SHARE, and never above 1
    for _ in range(3):
        stats.add_progress_score(0.1)
    assert stats.calibration() <= 0.1


def test_a_calibrated_kind_is_steered_by_its_calibration_not_by_its_early_count():
    stats = stats_of(lognormal(200, 600.0))
    for _ in range(20):
        stats.add_progress_end(True)  # untrusted by the count
    assert adaptive.steered_delay(15.0, 500.0, stats, POLICY) == 15.0
    for _ in range(adaptive.CALIBRATION_MIN):
        stats.add_progress_score(0.25)
    assert adaptive.steered_delay(15.0, 400.0, stats, POLICY) == pytest.approx(400.0 * stats.calibration())


def test_scores_round_trip_merge_and_survive_malformed_documents():
    stats = DurationStats().add(100.0).add_progress_score(0.5).add_progress_score(1e9).add_progress_score(0.0)
    assert set(stats.progress_scores) == {adaptive.SCORE_OFFSET - 4, adaptive.SCORE_TOP, 0}
    assert DurationStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    assert sum(stats.merge(stats).progress_scores.values()) == 6
    for bad in ({"-1": 3}, {"999": 3}, {"x": 3}, {"60": -2}, {"60": True}, "nope"):
        assert DurationStats.from_dict({"count": 1, "buckets": {"4": 1}, "progress_scores": bad}).progress_scores == {}
    assert DurationStats().add_progress_score(float("nan")).add_progress_score(-1).progress_scores == {}


def test_a_document_whose_buckets_are_not_a_map_reads_as_nothing_learnt():
    assert DurationStats.from_dict({"count": 3, "buckets": ["4", 3]}) == DurationStats()
