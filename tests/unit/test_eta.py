"""functions.domain.eta: the completion estimate, one rule per test."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest

from functions.domain import eta
from functions.domain.adaptive import MIN_SAMPLES, DurationStats
from tests.unit import factories
from tests.unit.factories import NOW, stats_of

T0 = NOW.timestamp()



def lognormal(n, median, sigma=0.3, seed=3):
    return factories.lognormal(n, median, sigma, seed)


def samples(*pairs):
    return [[T0 + t, p] for t, p in pairs]


# ---- samples kept on the record ----------------------------------------------------


def test_a_sample_is_added_per_poll_that_reports_progress():
    kept = eta.add_sample(None, T0, 10)
    assert eta.add_sample(kept, T0 + 5, 20) == [[T0, 10], [T0 + 5, 20]]


def test_a_poll_without_progress_adds_no_sample():
    assert eta.add_sample(None, T0, None) is None
    assert eta.add_sample([[T0, 10]], T0 + 5, None) == [[T0, 10]]


def test_a_replayed_poll_at_the_same_time_adds_nothing():
    assert eta.add_sample([[T0, 10]], T0, 12) == [[T0, 10]]


def test_only_the_first_and_the_latest_samples_are_kept():
    kept = None
    for i in range(20):
        kept = eta.add_sample(kept, T0 + i, i)
    assert len(kept) == eta.SAMPLES_KEPT
    assert kept[0] == [T0, 0]
    assert [p for _, p in kept[1:]] == list(range(20 - eta.SAMPLES_KEPT + 1, 20))


def test_while_queued_only_the_latest_sample_at_the_starting_value_is_kept():
    """Queued at 0 % for 100 s, then moving: the fit starts where the queue was last seen, not at submission."""
    kept = None
    for t, p in [(0, 0), (50, 0), (100, 0), (110, 5), (120, 10)] + [(120 + 10 * i, 10 + 5 * i) for i in range(1, 10)]:
        kept = eta.add_sample(kept, T0 + t, p)
    assert kept[0] == [T0 + 100, 0] and len(kept) == eta.SAMPLES_KEPT
    left = eta.from_progress(kept, T0 + 210)
    assert left.median == pytest.approx(90, rel=0.01)  # at 55 %, 45 % to go at 0.5 %/s


# ---- progress ----------------------------------------------------------------------


def test_progress_extrapolates_linearly_to_100():
    remaining = eta.from_progress(samples((0, 10), (100, 20)), T0 + 100)
    assert remaining.median == pytest.approx(800)
    assert remaining.low < remaining.median < remaining.high


def test_one_sample_is_not_a_trend():
    assert eta.from_progress(samples((0, 40)), T0) is None


def test_stalled_progress_gives_no_estimate():
    assert eta.from_progress(samples((0, 40), (60, 40), (120, 40)), T0 + 120) is None


def test_queue_time_at_the_starting_percentage_is_not_counted_as_work():
    # Queued at 0 % for 100 s, then 10 % per 10 s: 80 s left at 20 %, not 400 s.
    remaining = eta.from_progress(samples((0, 0), (100, 0), (110, 10), (120, 20)), T0 + 120)
    assert remaining.median == pytest.approx(80)


def test_progress_at_100_percent_while_running_says_nothing():
    assert eta.from_progress(samples((0, 50), (10, 100)), T0 + 10) is None


def test_the_interval_narrows_as_the_work_nears_its_end():
    early = eta.from_progress(samples((0, 10), (10, 20)), T0 + 10)
    late = eta.from_progress(samples((0, 80), (10, 90)), T0 + 10)
    assert late.sigma < early.sigma


def test_a_changing_rate_widens_the_interval():
    steady = eta.from_progress(samples((0, 10), (10, 20), (20, 30)), T0 + 20)
    jumpy = eta.from_progress(samples((0, 10), (10, 12), (20, 30)), T0 + 20)
    assert jumpy.sigma > steady.sigma


def test_time_since_the_last_sample_is_subtracted():
    at_sample = eta.from_progress(samples((0, 10), (100, 20)), T0 + 100)
    later = eta.from_progress(samples((0, 10), (100, 20)), T0 + 300)
    assert later.median == pytest.approx(at_sample.median - 200)


# ---- history -----------------------------------------------------------------------


def test_history_needs_enough_finished_operations():
    assert eta.from_history(stats_of([600] * (MIN_SAMPLES - 1)), 0) is None
    assert eta.from_history(None, 0) is None


def test_history_weighs_each_duration_by_how_likely_a_random_moment_of_its_life_is_now():
    # Weighted by 1/D, a log-normal kind (median m, sigma s) read at the start is log-normal around m·e^(-s²).
    sigma = 0.5
    stats = stats_of(lognormal(20_000, 600, sigma=sigma))
    remaining = eta.from_history(stats, 0)
    assert remaining.median == pytest.approx(600 * math.exp(-sigma ** 2), rel=0.03)
    assert remaining.low == pytest.approx(600 * math.exp(-sigma ** 2 - eta.Z80 * sigma), rel=0.05)
    assert remaining.high == pytest.approx(600 * math.exp(-sigma ** 2 + eta.Z80 * sigma), rel=0.05)


def test_on_a_kind_spread_over_orders_of_magnitude_what_is_left_is_about_what_has_run():
    # Log-uniform durations (equal counts per log-bucket) weighted by 1/D:
    # P(D > x | D > t) = (1/x - 1/top) / (1/t - 1/top).
    buckets = {i: 200 for i in range(8, 54)}  # 4 per doubling: 4 s .. 8,192 s
    stats = DurationStats(200 * len(buckets), buckets)
    top = stats.bins()[-1][1]
    for elapsed in (30.0, 300.0, 1000.0):
        median_end = 2 / (1 / elapsed + 1 / top)
        assert eta.from_history(stats, elapsed).median == pytest.approx(median_end - elapsed, rel=0.02)


def test_history_is_conditioned_on_the_time_already_elapsed():
    stats = stats_of(lognormal(2000, 600))
    at_start, later = eta.from_history(stats, 0), eta.from_history(stats, 700)
    # Having run past most of its kind, it ends later than the kind's typical end, and soon.
    assert 700 + later.median > at_start.median
    assert later.median < at_start.median
    assert later.low >= eta.MIN_REMAINING_S * 0.5


def test_past_nearly_all_of_its_kind_history_says_nothing():
    stats = stats_of(lognormal(2000, 600))
    assert eta.from_history(stats, stats.quantile(0.99)) is None


# ---- blend and estimate ------------------------------------------------------------


def test_with_progress_history_is_the_prior_and_progress_the_likelihood():
    history = stats_of(lognormal(4000, 1000, sigma=0.6))
    alone = eta.from_history(history, 100)
    sure = eta.Remaining(180, 200, 220)
    combined = eta.from_history(history, 100, sure)
    # Between the two, nearer the surer; narrower than history alone.
    assert 200 < combined.median < alone.median
    assert combined.median - 200 < alone.median - combined.median
    assert combined.sigma < alone.sigma


def test_agreeing_sources_give_a_narrower_interval_than_either():
    history = stats_of(lognormal(4000, 1000, sigma=0.4))
    alone = eta.from_history(history, 0)
    progress = eta.Remaining(alone.low, alone.median, alone.high)
    combined = eta.from_history(history, 0, progress)
    assert combined.sigma < min(alone.sigma, progress.sigma)
    assert combined.median == pytest.approx(alone.median, rel=0.1)


def test_progress_that_says_nothing_leaves_history_as_it_is():
    history = stats_of(lognormal(4000, 1000, sigma=0.6))
    shrug = eta.Remaining(1e-30, 1.0, 1e30)  # a likelihood flat over every duration of the kind
    for elapsed in (0, 800, 2000):
        alone, combined = eta.from_history(history, elapsed), eta.from_history(history, elapsed, shrug)
        assert combined.median == pytest.approx(alone.median, rel=0.02)
        assert combined.low == pytest.approx(alone.low, rel=0.03)
        assert combined.high == pytest.approx(alone.high, rel=0.02)


def test_progress_pointing_where_no_duration_of_its_kind_lies_is_taken_alone():
    history = stats_of(lognormal(2000, 600))
    assert eta.from_history(history, 100, eta.Remaining(0.9e6, 1e6, 1.1e6)) is None
    crawling = samples((-1000, 0), (0, 0.1))  # 0.1 % per 1,000 s: ~1e6 s left, where its kind takes ~600 s
    estimate = eta.estimate(NOW, 100, crawling, history)
    assert estimate.basis == "progress"
    assert estimate.eta == NOW + timedelta(seconds=round(eta.from_progress(crawling, T0).median, 3))


def test_no_progress_and_no_history_means_no_estimate():
    assert eta.estimate(NOW, 60, None, None) is None
    assert eta.estimate(NOW, 60, samples((0, 30)), DurationStats()) is None


def test_progress_alone_is_basis_progress():
    estimate = eta.estimate(NOW, 100, samples((-100, 10), (0, 20)), None)
    assert estimate.basis == "progress"
    assert estimate.eta == NOW + timedelta(seconds=800)
    assert estimate.low < estimate.eta < estimate.high


def test_history_alone_is_basis_history():
    stats = stats_of(lognormal(2000, 600))
    estimate = eta.estimate(NOW, 0, None, stats)
    assert estimate.basis == "history"
    remaining = eta.from_history(stats, 0)
    assert estimate.eta == NOW + timedelta(seconds=round(remaining.median, 3))


def test_both_sources_are_basis_both():
    stats = stats_of(lognormal(2000, 600))
    estimate = eta.estimate(NOW, 100, samples((-100, 10), (0, 20)), stats)
    assert estimate.basis == "both"
    assert estimate.fields() == {"eta": estimate.eta, "eta_low": estimate.low, "eta_high": estimate.high,
                                 "eta_basis": "both"}


def test_the_estimate_is_never_before_now():
    estimate = eta.estimate(NOW, 10_000, samples((-10_000, 10), (-5_000, 20)), None)
    assert estimate.low >= NOW


# ---- the histogram's buckets, which history reads --------------------------------


def test_bins_list_each_bucket_with_its_edges_and_count():
    stats = stats_of([10, 10, 1000])
    bins = stats.bins()
    assert [n for _, _, n in bins] == [2, 1]
    assert all(lo < hi for lo, hi, _ in bins) and bins[0][0] <= 10 < bins[0][1]


def test_history_weighed_alike_reads_the_kinds_own_quantiles_from_the_start():
    """Weight 0 (a reader at a fixed elapsed time): at elapsed 0 the estimate is the histogram's own median."""
    stats = stats_of(lognormal(2000, 600.0, sigma=0.8))
    left = eta.from_history(stats, 0.0, weight=0.0)
    assert left.median == pytest.approx(stats.quantile(0.5), rel=1e-9)
    assert left.low == pytest.approx(stats.quantile(0.1), rel=1e-9)
    assert left.high == pytest.approx(stats.quantile(0.9), rel=1e-9)


def test_a_heavier_weight_on_short_durations_reads_an_earlier_end():
    stats = stats_of(lognormal(2000, 600.0, sigma=0.8))
    medians = [eta.from_history(stats, 120.0, weight=w).median for w in (0.0, 0.5, 1.0, 2.0)]
    assert medians == sorted(medians, reverse=True) and len(set(medians)) == 4


def test_the_soonest_end_lies_the_lower_spread_carried_three_deviations_below_the_median():
    around = eta._around(600.0, 0.4)
    assert around.soonest == pytest.approx(600.0 * math.exp(-eta.SOONEST_Z * 0.4), rel=1e-6)
    assert around.soonest < around.low
    lopsided = eta.Remaining(500.0, 600.0, 2000.0)  # only the lower side counts
    assert lopsided.soonest == pytest.approx(600.0 * (500.0 / 600.0) ** (eta.SOONEST_Z / eta.Z80), rel=1e-6)


def test_only_a_progress_trend_gives_a_soonest_end():
    now = NOW + timedelta(seconds=200)
    history = stats_of(lognormal(200, 900.0))
    assert eta.estimate(now, 200, None, history).soonest is None
    trend = samples((0, 10), (100, 20), (200, 30))
    for stats in (None, history):
        estimate = eta.estimate(now, 200, trend, stats)
        assert now < estimate.soonest < estimate.low
