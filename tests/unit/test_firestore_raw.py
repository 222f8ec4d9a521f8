"""The raw-protobuf writes and reads match the Firestore client library's own, byte for byte."""
from datetime import datetime, timedelta, timezone

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, strategies as st
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document

from functions.adapters import firestore_raw as raw
from functions.domain.record import Record
from tests.unit.factories import make_record

PATH = "projects/p/databases/(default)/documents/lro_operations/abc"
AT = datetime(2026, 12, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
VALUES = {
    "none": None, "yes": True, "no": False, "int": 7, "negative": -3, "big": 2**62, "float": 1.5,
    "text": "héllo", "empty_text": "", "when": AT, "naive": datetime(2001, 2, 3, 4, 5, 6, 7),
    "before_1970": datetime(1960, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc),
    "other_zone": AT.astimezone(timezone(timedelta(hours=-5))),
    "nanos": DatetimeWithNanoseconds(2026, 1, 2, 3, 4, 5, nanosecond=123456789, tzinfo=timezone.utc),
    "map": {"a": 1, "b": {"c": [1, "x", None]}}, "empty_map": {}, "list": [1, 2.5, "z", {"k": False}],
    "empty_list": [], "bytes": b"\x00\x01",
}


def serialized(pb) -> bytes:
    return pb.SerializeToString(deterministic=True)


def library_update(changes, version):
    option = _helpers.LastUpdateOption(version) if version is not None else None
    return _helpers.pbs_for_update(PATH, changes, option)[0]._pb


@pytest.mark.parametrize("name", sorted(VALUES))
def test_each_value_encodes_as_the_library_encodes_it(name):
    ours = raw.document.Value.pb()()
    raw.fill_value(ours, VALUES[name])
    assert serialized(ours) == serialized(_helpers.encode_value(VALUES[name])._pb)


def test_a_guarded_update_is_the_library_update_with_a_last_update_time_option():
    version = DatetimeWithNanoseconds(2026, 12, 2, 1, 0, 0, nanosecond=999, tzinfo=timezone.utc)
    assert serialized(raw.update_write(PATH, VALUES, version)) == serialized(library_update(VALUES, version))


def test_an_update_of_a_plain_datetime_version_keeps_its_microseconds():
    assert serialized(raw.update_write(PATH, {"a": 1}, AT)) == serialized(library_update({"a": 1}, AT))


def test_an_unguarded_update_requires_the_document_to_exist_as_the_library_does():
    assert serialized(raw.update_write(PATH, {"a": 1}, None)) == serialized(library_update({"a": 1}, None))


def test_an_empty_update_is_refused_as_the_library_refuses_it():
    with pytest.raises(ValueError):
        raw.update_write(PATH, {}, AT)


def test_a_record_change_encodes_as_the_library_encodes_it():
    before = make_record()
    after = before.with_changes(polls=before.polls + 1, last_polled_at=AT, metadata={"x": [1, {"y": 2}]},
                                error={"code": 5, "message": "gone"})
    changes = after.doc_changes(before)
    assert serialized(raw.update_write(PATH, changes, AT)) == serialized(library_update(changes, AT))


def test_a_set_with_a_server_timestamp_is_the_library_set():
    data = {"data": "{}", "attributes": {"type": "lro.state_changed"}, "ordering_key": "k", "sequence": 2}
    ours = raw.set_write(PATH, data, server_timestamps=("created_at",))
    theirs = _helpers.pbs_for_set_no_merge(PATH, {**data, "created_at": firestore.SERVER_TIMESTAMP})
    assert len(theirs) == 1
    assert serialized(ours) == serialized(theirs[0]._pb)


def test_a_delete_is_the_library_batch_delete():
    class Client:
        _database_string = "projects/p/databases/(default)"

    theirs = firestore.WriteBatch(Client())
    theirs.delete(firestore.DocumentReference("lro_operations", "abc", client=_FakeClient()))
    request = raw.commit_request(Client())
    raw.delete_write(PATH, request.writes.add())
    assert [serialized(w) for w in request.writes] == [serialized(w._pb) for w in theirs._write_pbs]
    assert serialized(raw.delete_write(PATH)) == serialized(_helpers.pb_for_delete(PATH, None)._pb)


class _FakeClient:
    """What a DocumentReference asks of its client to name itself."""

    _database_string = "projects/p/databases/(default)"


def test_fields_decode_as_the_library_decodes_them():
    encoded = _helpers.encode_dict(VALUES)
    fields = document.MapValue(fields=encoded)._pb.fields
    ours = raw.decode_fields(fields, None)
    assert ours == _helpers.decode_dict(fields, None)
    assert type(ours["when"]) is DatetimeWithNanoseconds
    assert ours["nanos"].nanosecond == 123456789


def test_a_record_survives_the_round_trip():
    record = make_record().with_changes(metadata={"a": [1, 2]}, last_polled_at=AT, labels={"team": "ocr"})
    pb = raw.update_write(PATH, record.to_doc(), None)
    assert Record.from_doc(raw.decode_fields(pb.update.fields, None)) == record


@given(st.integers(min_value=-62135596800, max_value=253402300799), st.integers(min_value=0, max_value=999_999_999))
def test_a_timestamp_decodes_as_the_library_decodes_it(seconds, nanos):
    stamp = Timestamp(seconds=seconds, nanos=nanos)
    ours, theirs = raw.timestamp(stamp), DatetimeWithNanoseconds.from_timestamp_pb(stamp)
    assert type(ours) is type(theirs) and ours == theirs and hash(ours) == hash(theirs)
    assert ours.nanosecond == theirs.nanosecond and ours.microsecond == theirs.microsecond
    assert ours.tzinfo == theirs.tzinfo and ours.rfc3339() == theirs.rfc3339()
    assert ours.timestamp_pb() == theirs.timestamp_pb()


def test_a_version_is_the_library_datetime_with_nanoseconds():
    stamp = DatetimeWithNanoseconds(2026, 1, 2, 3, 4, 5, nanosecond=7, tzinfo=timezone.utc).timestamp_pb()
    assert raw.timestamp(stamp) == DatetimeWithNanoseconds.from_timestamp_pb(stamp)
    assert raw.timestamp(stamp).nanosecond == 7


def test_writes_filled_in_place_in_a_request_are_the_same_writes():
    class Client:
        _database_string = "projects/p/databases/(default)"

    request = raw.commit_request(Client())
    raw.update_write(PATH, {"a": 1}, AT, request.writes.add())
    raw.set_write(PATH, {"b": "x"}, ("created_at",), request.writes.add())
    assert request.database == Client._database_string
    assert [serialized(w) for w in request.writes] == [serialized(raw.update_write(PATH, {"a": 1}, AT)),
                                                       serialized(raw.set_write(PATH, {"b": "x"}, ("created_at",)))]
