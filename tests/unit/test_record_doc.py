"""A record's Firestore document and back (Record.to_doc, Record.from_doc)."""
from __future__ import annotations

from dataclasses import fields

import pytest

from functions.domain.record import Record
from functions.domain.states import State
from tests.unit.factories import NOW, make_record


def test_a_record_read_from_its_document_equals_one_built_through_init():
    full = make_record(metadata={"m": [1, {"x": None}]}, labels={"team": "ocr"}, policy={"initial_delay_s": 5},
                       error={"code": 3}, state=State.RUNNING, eta=NOW)
    for record in (full, make_record()):
        doc = record.to_doc()
        built = Record(**{f.name: getattr(record, f.name) for f in fields(Record)})
        read = Record.from_doc(doc)
        assert read == built and list(read.__dict__) == list(built.__dict__)  # same fields, same order


def test_a_document_without_the_optional_fields_gets_the_defaults_each_its_own():
    doc = {k: v for k, v in make_record().to_doc().items()
           if k in ("id", "name", "service", "api_version", "endpoint", "submitted_at", "next_poll_at",
                    "deadline_at")}
    first, second = Record.from_doc(doc), Record.from_doc(doc)
    assert first.state is State.PENDING and first.labels == {} and first.policy == {} and first.sequence == 0
    assert first.labels is not second.labels and first.policy is not second.policy


def test_a_document_missing_a_required_field_is_refused_as_init_refuses_it():
    doc = make_record().to_doc()
    del doc["endpoint"]
    with pytest.raises(TypeError, match="endpoint"):
        Record.from_doc(doc)
