"""Shape checks of an Operations API answer: anything else is that operation's error."""
from __future__ import annotations

import pytest

from functions.domain.answers import operation_problem, same_operation

NAME = "projects/my-project/locations/us/operations/123"


def test_a_well_formed_operation_has_no_problem():
    assert operation_problem({"name": NAME, "done": True, "response": {}, "metadata": {"state": "X"}}, NAME) is None
    assert operation_problem({"name": NAME}, NAME) is None
    assert operation_problem({"done": False, "error": None}, NAME) is None  # name left out


@pytest.mark.parametrize("answer, says", [
    ([{"name": NAME}], "a JSON array"),
    ("done", "a JSON string"),
    (None, "a JSON null"),
    ({"name": NAME, "done": "yes"}, "done is a string"),
    ({"name": NAME, "done": 1}, "done is a number"),
    ({"name": NAME, "metadata": []}, "metadata is a array"),
    ({"name": NAME, "response": "ok"}, "response is a string"),
    ({"name": NAME, "error": 13}, "error is a number"),
    ({"name": NAME, "error": {"code": "13"}}, "error.code is a string, not a number"),
    ({"name": NAME, "error": {"code": True}}, "error.code is a boolean"),
    ({"name": NAME, "error": {"message": 5}}, "error.message is a number"),
    ({"name": NAME, "error": {"details": {}}}, "error.details is a object"),
    ({"name": "projects/my-project/locations/us/operations/999"}, "names a different operation"),
    ({"name": 123}, "names a different operation"),
])
def test_anything_else_is_named_as_the_problem(answer, says):
    assert says in operation_problem(answer, NAME)


def test_an_answer_may_name_the_project_by_number_instead_of_id():
    assert same_operation("projects/123456/locations/us/operations/123", NAME)
    assert not same_operation("projects/123456/locations/eu/operations/123", NAME)
    assert not same_operation("projects/123456/locations/us/operations/123/x", NAME)
    assert not same_operation("folders/123456/locations/us/operations/123", NAME)
