"""Firestore writes and query results as raw protobuf, for the poll path's hot loop.

Why: the client library builds every write and reads every result through
proto-plus wrappers (a `Message.__init__` and a marshal rule per value), which
cost more CPU than the GET they record. Here the same protobuf messages are
built and read directly (tests/unit/test_firestore_raw.py checks them byte for
byte against the library's own), then handed to the library's gapic client, so
its retries, error mapping, routing headers and credentials stay as they are.

Only plain values take the fast path; anything else (references, geo points,
vectors, BSON types, maps on reading) goes through the library's own
encode_value/decode_value, so nothing is encoded or decoded differently.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from google.api_core import exceptions as gexc
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.gapic_v1.method import DEFAULT
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document, firestore, write

_Value = document.Value.pb()
_Write = write.Write.pb()
_FieldTransform = write.DocumentTransform.FieldTransform.pb()
_REQUEST_TIME = _FieldTransform.ServerValue.Value("REQUEST_TIME")
_CommitRequest = firestore.CommitRequest.pb()
_BatchWriteRequest = firestore.BatchWriteRequest.pb()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NANOS = DatetimeWithNanoseconds(1970, 1, 1, tzinfo=timezone.utc)  # a subclass plus a timedelta stays one


# Encoding ------------------------------------------------------------------------
def fill_value(target, value: Any) -> None:
    """Write `value` into the Value message `target` in place, as the library's encode_value would."""
    if value is None:
        target.null_value = 0
    elif value is True or value is False:  # before int: bool is an int
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, datetime):
        fill_timestamp(target.timestamp_value, value)
    elif type(value) is dict:
        target.map_value.SetInParent()  # an empty map is still a map
        fields = target.map_value.fields
        for key, item in value.items():
            fill_value(fields[key], item)
    elif type(value) in (list, tuple):
        target.array_value.SetInParent()
        values = target.array_value.values
        for item in value:
            fill_value(values.add(), item)
    else:  # bytes (BSON subtypes), references, geo points, vectors…: the library's own way
        target.CopyFrom(_helpers.encode_value(value)._pb)


def fill_timestamp(target, value: datetime) -> None:
    """As the library: nanoseconds where the value has them, naive datetimes taken as UTC."""
    if isinstance(value, DatetimeWithNanoseconds):
        target.CopyFrom(value.timestamp_pb())
    else:
        fill_micros(target, value)


def fill_micros(target, value: datetime) -> None:
    """To the microsecond: what proto-plus makes of any datetime in a message field."""
    delta = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)) - _EPOCH
    target.seconds = delta.days * 86400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def update_write(document_path: str, changes: dict, last_update_time: datetime | None, into=None) -> Any:
    """`DocumentReference.update(changes, option=write_option(last_update_time=…))` as a Write:
    the changed top-level fields and their mask, guarded by the version read. Keys are plain
    field names (a record's), never dotted paths. `into`: a request's new write to fill (no copy)."""
    if not changes:
        raise ValueError("Cannot update with an empty document.")
    pb = _Write() if into is None else into
    pb.update.name = document_path
    fields = pb.update.fields
    for key, value in changes.items():
        fill_value(fields[key], value)
    pb.update_mask.field_paths.extend(sorted(changes))
    if last_update_time is None:
        pb.current_document.exists = True
    else:  # as the library's write_option: to the microsecond (Firestore's versions are)
        fill_micros(pb.current_document.update_time, last_update_time)
    return pb


def set_write(document_path: str, data: dict, server_timestamps: Iterable[str] = (), into=None) -> Any:
    """`DocumentReference.set(data)` as a Write, with SERVER_TIMESTAMP in the named top-level fields."""
    pb = _Write() if into is None else into
    pb.update.name = document_path
    fields = pb.update.fields
    for key, value in data.items():
        fill_value(fields[key], value)
    for key in sorted(server_timestamps):
        pb.update_transforms.add(field_path=key, set_to_server_value=_REQUEST_TIME)
    return pb


def delete_write(document_path: str, into=None) -> Any:
    """`WriteBatch.delete(reference)` as a Write (no precondition: deleting what is gone is no error)."""
    pb = _Write() if into is None else into
    pb.delete = document_path
    return pb


# Sending -------------------------------------------------------------------------
def commit_request(client) -> Any:
    """An empty CommitRequest: writes are added in place (`request.writes.add()`)."""
    return _CommitRequest(database=client._database_string)


def batch_write_request(client) -> Any:
    return _BatchWriteRequest(database=client._database_string)


def commit(client, request) -> Any:
    """An atomic Commit; the raw CommitResponse. Raises as `WriteBatch.commit` does."""
    response = client._firestore_api.commit(request=firestore.CommitRequest.wrap(request),
                                            metadata=client._rpc_metadata)
    return response._pb


def batch_write(client, request) -> Any:
    """A non-atomic BatchWrite; the raw BatchWriteResponse (a status per write)."""
    response = client._firestore_api.batch_write(request=firestore.BatchWriteRequest.wrap(request),
                                                 metadata=client._rpc_metadata)
    return response._pb


def timestamp(timestamp_pb) -> DatetimeWithNanoseconds:
    """`DatetimeWithNanoseconds.from_timestamp_pb`, the same value made by one addition instead
    of a datetime, its fields, and a constructor in Python (a record has eight timestamps). Write
    and update times (versions) too, as the library gives them and takes them back in write_option."""
    nanos = timestamp_pb.nanos
    value = _EPOCH_NANOS + timedelta(0, timestamp_pb.seconds, nanos // 1000)  # days, seconds, µs
    value._nanosecond = nanos  # as DatetimeWithNanoseconds.__new__ sets it
    return value


# Reading -------------------------------------------------------------------------
def decode_fields(fields, client) -> dict:
    """A document's fields as the library's `to_dict()` gives them."""
    return {key: decode_value(value, client) for key, value in fields.items()}


def decode_value(value, client) -> Any:
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "null_value":
        return None
    if kind == "integer_value":
        return value.integer_value
    if kind == "timestamp_value":
        return timestamp(value.timestamp_value)
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "double_value":
        return value.double_value
    return _helpers.decode_value(value, client)  # maps (vectors, BSON types), arrays, references…


def run_query(query) -> list[tuple[str, dict, DatetimeWithNanoseconds]]:
    """A query's documents as (id, fields, update time). A stream that breaks off is read again
    through the library's own resumable stream."""
    client = query._client
    request, expected_prefix, kwargs = query._prep_stream(retry=DEFAULT)
    found = []
    try:
        for response in client._firestore_api.run_query(request=request, metadata=client._rpc_metadata,
                                                        **kwargs):
            pb = response._pb
            if pb.HasField("document"):
                doc = pb.document
                found.append((_helpers.get_doc_id(doc, expected_prefix), decode_fields(doc.fields, client),
                              timestamp(doc.update_time)))
    except gexc.GoogleAPICallError:
        return [(s.id, s.to_dict(), s.update_time) for s in query.stream()]
    return found
