"""Effect claims on the Firestore emulator: claim, complete, release, take over, fail fast."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from functions.adapters.firestore_claims import ACQUIRED, BUSY, DONE, ClaimsUnavailable, FirestoreClaims
from functions.adapters.firestore_store import FirestoreStore
from functions.domain.record import utcnow
from functions.local.processes import free_port


@pytest.fixture
def claims(emulators, project_id):
    return FirestoreClaims(FirestoreStore(project_id, "lro_operations"), "lro_operations_claims")


def test_the_first_claim_is_acquired_and_a_second_one_finds_it_busy(claims):
    now = utcnow()
    assert claims.claim("effect-1", now, 60) == ACQUIRED
    assert claims.claim("effect-1", now, 60) == BUSY


def test_a_completed_claim_is_done_and_keeps_its_result_and_ttl(claims):
    now = utcnow()
    claims.claim("effect-2", now, 60)
    claims.complete("effect-2", {"outcome": "sent", "api_status": {"details": [[1, 2]]}}, now, keep_days=8)
    assert claims.claim("effect-2", now, 60) == DONE
    assert claims.result("effect-2") == {"outcome": "sent", "api_status": {"details": [[1, 2]]}}
    doc = claims.get("effect-2")
    assert doc["status"] == "COMPLETED" and doc["expires_at"] >= now + timedelta(days=8) - timedelta(seconds=1)


def test_a_released_claim_can_be_acquired_again_so_a_redelivery_retries_the_effect(claims):
    now = utcnow()
    claims.claim("effect-3", now, 60)
    claims.release("effect-3")
    assert claims.get("effect-3") is None
    assert claims.claim("effect-3", now, 60) == ACQUIRED


def test_an_expired_in_progress_claim_of_a_crashed_holder_is_taken_over(claims):
    then = utcnow() - timedelta(minutes=10)
    assert claims.claim("effect-4", then, 60) == ACQUIRED
    assert claims.claim("effect-4", utcnow(), 60) == ACQUIRED
    assert claims.get("effect-4")["expires_at"] > utcnow()


def test_an_in_progress_claim_has_no_result(claims):
    claims.claim("effect-5", utcnow(), 60)
    assert claims.result("effect-5") is None and claims.result("never-claimed") is None


def _claim_concurrently(claims, key: str, times: int = 10) -> list[str]:
    """`times` threads claim `key` at the same instant; their verdicts."""
    now, results, barrier = utcnow(), [], threading.Barrier(times)

    def contend():
        barrier.wait()
        results.append(claims.claim(key, now, 60))

    threads = [threading.Thread(target=contend) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_of_ten_concurrent_claimants_exactly_one_acquires(claims):
    assert sorted(_claim_concurrently(claims, "effect-6")) == [ACQUIRED] + [BUSY] * 9


def test_of_ten_concurrent_takeovers_of_an_expired_claim_exactly_one_acquires(claims):
    claims.claim("effect-7", utcnow() - timedelta(minutes=10), 60)
    assert _claim_concurrently(claims, "effect-7").count(ACQUIRED) == 1


def test_an_unreachable_store_fails_within_seconds_as_claims_unavailable(monkeypatch, project_id):
    import time

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    claims = FirestoreClaims(FirestoreStore(project_id, "lro_operations"), "lro_operations_claims")
    started = time.monotonic()
    with pytest.raises(ClaimsUnavailable) as caught:
        claims.claim("effect-8", utcnow(), 60)
    assert time.monotonic() - started < 15
    assert caught.value.__cause__ is not None  # the store's own error is kept
