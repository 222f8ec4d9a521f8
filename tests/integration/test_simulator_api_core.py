"""Google's own REST operations client (google-api-core) works against the simulator.

Pointing the client at the simulator needs no path-template overrides: the
transport joins `host` with `/v1/{name=**/operations/*}`, so the Google host
simply becomes part of `host`:
    host="http://127.0.0.1:PORT/us-documentai.googleapis.com"
The scheme must be inside `host`: OperationsRestTransport accepts `url_scheme`
but (api-core 2.44) never passes it on, so alone it still yields https.

api-core parses replies strictly (unknown fields are errors, `Any` payloads
must resolve to a registered message type), so we register Document AI's
metadata/response messages as they are in google/cloud/documentai/v1: the
test then also proves our JSON fits Google's real schema field by field.
"""
import pytest
from google.api_core import exceptions
from google.api_core.operations_v1 import AbstractOperationsClient
from google.api_core.operations_v1.transports.rest import OperationsRestTransport
from google.auth.credentials import AnonymousCredentials
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2  # noqa: F401 - registers Timestamp
from google.rpc import status_pb2  # noqa: F401 - registers google.rpc.Status


DOCAI = "us-documentai.googleapis.com"
PARENT = "projects/1/locations/us"

_F = descriptor_pb2.FieldDescriptorProto


def _field(name, number, ftype, type_name=None, repeated=False):
    f = _F(name=name, number=number, type=ftype,
           label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        f.type_name = type_name
    return f


def _enum(name, values):
    return descriptor_pb2.EnumDescriptorProto(
        name=name, value=[descriptor_pb2.EnumValueDescriptorProto(name=v, number=i) for i, v in enumerate(values)])


def register_documentai_types():
    pool = descriptor_pool.Default()
    try:
        pool.FindMessageTypeByName("google.cloud.documentai.v1.BatchProcessMetadata")
        return  # the real google-cloud-documentai is installed
    except KeyError:
        pass
    pkg = ".google.cloud.documentai.v1"
    human_review = descriptor_pb2.DescriptorProto(
        name="HumanReviewStatus",
        field=[_field("state", 1, _F.TYPE_ENUM, f"{pkg}.HumanReviewStatus.State"),
               _field("state_message", 2, _F.TYPE_STRING),
               _field("human_review_operation", 3, _F.TYPE_STRING)],
        enum_type=[_enum("State", ["STATE_UNSPECIFIED", "SKIPPED", "VALIDATION_PASSED", "IN_PROGRESS", "ERROR"])])
    individual = descriptor_pb2.DescriptorProto(
        name="IndividualProcessStatus",
        field=[_field("input_gcs_source", 1, _F.TYPE_STRING),
               _field("status", 2, _F.TYPE_MESSAGE, ".google.rpc.Status"),
               _field("output_gcs_destination", 3, _F.TYPE_STRING),
               _field("human_review_status", 5, _F.TYPE_MESSAGE, f"{pkg}.HumanReviewStatus")])
    metadata = descriptor_pb2.DescriptorProto(
        name="BatchProcessMetadata",
        field=[_field("state", 1, _F.TYPE_ENUM, f"{pkg}.BatchProcessMetadata.State"),
               _field("state_message", 2, _F.TYPE_STRING),
               _field("create_time", 3, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
               _field("update_time", 4, _F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
               _field("individual_process_statuses", 5, _F.TYPE_MESSAGE,
                      f"{pkg}.BatchProcessMetadata.IndividualProcessStatus", repeated=True)],
        nested_type=[individual],
        enum_type=[_enum("State", ["STATE_UNSPECIFIED", "WAITING", "RUNNING", "SUCCEEDED",
                                   "CANCELLING", "CANCELLED", "FAILED"])])
    pool.Add(descriptor_pb2.FileDescriptorProto(
        name="lrowatch_test/documentai_v1_lro.proto", package="google.cloud.documentai.v1", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto", "google/rpc/status.proto"],
        message_type=[human_review, metadata, descriptor_pb2.DescriptorProto(name="BatchProcessResponse")]))


@pytest.fixture
def base_url(simulator):
    register_documentai_types()
    return simulator.base_url


@pytest.fixture
def client(base_url):
    transport = OperationsRestTransport(
        host=f"{base_url}/{DOCAI}",
        credentials=AnonymousCredentials(),
    )
    return AbstractOperationsClient(transport=transport)


def docai(sim, **script):
    return sim.create(**{"host": DOCAI, "kind": "documentai", "project": "1", **script})


def test_get_operation_parses_a_finished_documentai_operation(sim, client):
    op = docai(sim, running_s=1, items=3, failed_items=1, human_review_errors=1)
    sim.advance(2)
    got = client.get_operation(op["name"])
    assert got.name == op["name"]
    assert got.done is True
    assert got.HasField("response")
    assert got.metadata.type_url.endswith("documentai.v1.BatchProcessMetadata")


def test_get_operation_of_an_unknown_name_raises_not_found(sim, client):
    with pytest.raises(exceptions.NotFound):
        client.get_operation(f"{PARENT}/operations/nope")


def test_list_operations_applies_the_filter_and_follows_page_tokens(sim, client):
    sim.create_many([{"host": DOCAI, "kind": "documentai", "project": "1", "running_s": 1} for _ in range(5)])
    running = docai(sim, running_s=100)
    sim.advance(2)
    done = list(client.list_operations(PARENT, "TYPE=BATCH_PROCESS_DOCUMENTS AND done=true", page_size=2))
    assert len(done) == 5 and all(o.done for o in done)
    still_running = list(client.list_operations(PARENT, "done=false", page_size=2))
    assert [o.name for o in still_running] == [running["name"]]
    assert sim.stats()["lists"] == 3 + 1  # five done ops in pages of two, then one page


def test_list_operations_with_an_unknown_filter_raises_bad_request(sim, client):
    with pytest.raises(exceptions.BadRequest):
        list(client.list_operations(PARENT, "state=RUNNING"))


def test_cancel_operation_moves_the_operation_to_cancelled(sim, client):
    op = docai(sim, running_s=100, cancel_delay_s=1)
    client.cancel_operation(op["name"])
    sim.advance(1)
    got = client.get_operation(op["name"])
    assert got.done is True
    assert got.error.code == 1


def test_cancel_of_a_finished_operation_is_a_400_whose_status_is_failed_precondition(sim, client):
    op = docai(sim, running_s=1)
    sim.advance(2)
    # api-core picks the exception class from the HTTP code (400 → BadRequest), as with Google.
    with pytest.raises(exceptions.BadRequest) as exc:
        client.cancel_operation(op["name"])
    assert exc.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_the_client_sends_no_token_with_anonymous_credentials(sim, client):
    op = docai(sim)
    client.get_operation(op["name"])
    assert "authorization" not in sim.requests(limit=1)[0]["headers"]
