"""AWS's own documented mapping-template examples render to the output AWS documents.

examples/templates/petstore.yaml holds the templates as Amazon API Gateway's developer guide
prints them (the PetStore, grocery-store, photo-album, news-article, sales-invoice and
employee-record examples, and the ``$input`` reference's examples). Each test sends AWS's
documented input through ``propylon serve`` and checks what a recording loopback backend
received: method, path, headers and body, the body compared with AWS's documented output key by
key in order (AWS prints its outputs re-indented, so whitespace is not compared, except where
the documented output is not JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.test_serve import Served
from tests.serve.test_templates import _Recorder, _send, _start

EXAMPLE = Path(__file__).parents[2] / "examples" / "templates" / "petstore.yaml"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, _Recorder]]:
    text = EXAMPLE.read_text()
    assert "127.0.0.1:9000" in text
    text = text.replace("127.0.0.1:9000", "127.0.0.1:{port}")
    gateway, backend = _start(tmp_path_factory.mktemp("aws-examples"), text)
    try:
        yield gateway, backend
    finally:
        gateway.stop()
        backend.shutdown()
        backend.server_close()


def _ordered(text: str | bytes) -> Any:
    """JSON with every object as a list of pairs, so key order counts in comparisons."""
    return json.loads(text, object_pairs_hook=list)


def _post(served: tuple[Served, _Recorder], path: str, document: Any, **headers: str) -> tuple[str, str, bytes]:
    """POST ``document`` and return the (method, path, body) the backend received."""
    gateway, backend = served
    before = len(backend.received)
    status, answer = _send(gateway, path, json.dumps(document).encode(), **{**JSON, **headers})
    assert status == 200, answer
    assert len(backend.received) == before + 1
    got = backend.received[-1]
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Content-Length"] == str(len(got.body))
    return got.method, got.path, got.body


# --- "Mapping templates for REST APIs": the PetStore example -----------------------------------

PETS = [
    {"id": 1, "type": "dog", "price": 249.99},
    {"id": 2, "type": "cat", "price": 124.99},
    {"id": 3, "type": "fish", "price": 0.99},
]
PETS_OUT = """[
  { "description" : "Item 1 is a dog.", "askingPrice" : 249.99 },
  { "description" : "Item 2 is a cat.", "askingPrice" : 124.99 },
  { "description" : "Item 3 is a fish.", "askingPrice" : 0.99 }
]"""


def test_the_petstore_example(served: tuple[Served, _Recorder]) -> None:
    method, path, body = _post(served, "/docs/pets/asking-prices", PETS)
    assert (method, path) == ("POST", "/pets")
    assert _ordered(body) == _ordered(PETS_OUT)


# --- "Working with models and mapping templates": the grocery store --------------------------

GROCERIES = {
    "department": "produce",
    "categories": ["fruit", "vegetables"],
    "bins": [
        {"category": "fruit", "type": "apples", "price": 1.99, "unit": "pound", "quantity": 232},
        {"category": "fruit", "type": "bananas", "price": 0.19, "unit": "each", "quantity": 112},
        {"category": "vegetables", "type": "carrots", "price": 1.29, "unit": "bag", "quantity": 57},
    ],
}
GROCERIES_OUT = """{
  "choices": [
    { "kind": "apples", "suggestedPrice": "1.99 per pound", "available": 232 },
    { "kind": "bananas", "suggestedPrice": "0.19 per each", "available": 112 },
    { "kind": "carrots", "suggestedPrice": "1.29 per bag", "available": 57 }
  ]
}"""


def test_the_grocery_store_example(served: tuple[Served, _Recorder]) -> None:
    assert _ordered(_post(served, "/docs/groceries/choices", GROCERIES)[2]) == _ordered(GROCERIES_OUT)


# --- the photo album: booleans print as JSON's true/false, and AWS's input model is enforced ----


PHOTOS = {
    "photos": {
        "page": 1,
        "pages": "1234",
        "perpage": 100,
        "total": "123398",
        "photo": [
            {
                "id": "12345678901",
                "owner": "23456789@A12",
                "photographer_first_name": "Saanvi",
                "photographer_last_name": "Sarkar",
                "secret": "abc123d456",
                "server": "1234",
                "farm": 1,
                "title": "Sample photo 1",
                "ispublic": True,
                "isfriend": False,
                "isfamily": False,
            },
            {
                "id": "23456789012",
                "owner": "34567890@B23",
                "photographer_first_name": "Richard",
                "photographer_last_name": "Roe",
                "secret": "bcd234e567",
                "server": "2345",
                "farm": 2,
                "title": "Sample photo 2",
                "ispublic": True,
                "isfriend": False,
                "isfamily": False,
            },
        ],
    }
}
PHOTOS_OUT = """{
  "photos": [
    { "id": "12345678901", "photographedBy": "Saanvi Sarkar", "title": "Sample photo 1",
      "ispublic": true, "isfriend": false, "isfamily": false },
    { "id": "23456789012", "photographedBy": "Richard Roe", "title": "Sample photo 2",
      "ispublic": true, "isfriend": false, "isfamily": false }
  ]
}"""


def test_the_photo_album_example(served: tuple[Served, _Recorder]) -> None:
    assert _ordered(_post(served, "/docs/photos", PHOTOS)[2]) == _ordered(PHOTOS_OUT)


@pytest.mark.parametrize(
    "photos",
    [
        {"page": 1, "perpage": 5, "photo": []},  # "perpage": {"minimum": 10}
        {"page": 1, "perpage": 100},  # "required": ["photo"]
        {"page": "one", "perpage": 100, "photo": []},  # "page": {"type": "integer"}
    ],
)
def test_the_photo_album_input_model_refuses_what_it_forbids(
    served: tuple[Served, _Recorder], photos: dict[str, Any]
) -> None:
    gateway, backend = served
    before = len(backend.received)
    status, answer = _send(gateway, "/docs/photos", json.dumps({"photos": photos}).encode(), **JSON)
    assert status == 400
    assert json.loads(answer) == {"message": "Invalid request body"}
    assert len(backend.received) == before


# --- the news article, sales invoice and employee record examples (output mapping templates) ----

ARTICLE = {
    "count": 1,
    "items": [
        {
            "last_updated_date": "2015-04-24",
            "expire_date": "2016-04-25",
            "author_first_name": "John",
            "description": "Sample Description",
            "creation_date": "2015-04-20",
            "title": "Sample Title",
            "allow_comment": "1",
            "author": {"last_name": "Doe", "email": "johndoe@example.com", "first_name": "John"},
            "body": "Sample Body",
            "publish_date": "2015-04-25",
            "version": "1",
            "author_last_name": "Doe",
            "parent_id": 2345678901,
            "article_url": "http://www.example.com/articles/3456789012",
        }
    ],
    "version": 1,
}
ARTICLE_OUT = """{
  "count": 1,
  "items": [
    {
      "creation_date": "2015-04-20",
      "title": "Sample Title",
      "author": "John Doe",
      "body": "Sample Body",
      "publish_date": "2015-04-25",
      "article_url": "http://www.example.com/articles/3456789012"
    }
  ],
  "version": 1
}"""

INVOICE = {
    "DueDate": "2013-02-15",
    "Balance": 1990.19,
    "DocNumber": "SAMP001",
    "Status": "Payable",
    "Line": [
        {
            "Description": "Sample Expense",
            "Amount": 500,
            "DetailType": "ExpenseDetail",
            "ExpenseDetail": {
                "Customer": {"value": "ABC123", "name": "Sample Customer"},
                "Ref": {"value": "DEF234", "name": "Sample Construction"},
                "Account": {"value": "EFG345", "name": "Fuel"},
                "LineStatus": "Billable",
            },
        }
    ],
    "Vendor": {"value": "GHI456", "name": "Sample Bank"},
    "APRef": {"value": "HIJ567", "name": "Accounts Payable"},
    "TotalAmt": 1990.19,
}
INVOICE_OUT = """{
  "DueDate": "2013-02-15",
  "Balance": 1990.19,
  "DocNumber": "SAMP001",
  "Status": "Payable",
  "Line": [
    {
      "Description": "Sample Expense",
      "Amount": 500,
      "DetailType": "ExpenseDetail",
      "Customer": "ABC123 (Sample Customer)",
      "Ref": "DEF234 (Sample Construction)",
      "Account": "EFG345 (Fuel)",
      "LineStatus": "Billable"
    }
  ],
  "TotalAmt": 1990.19
}"""

EMPLOYEE = {
    "QueryResponse": {
        "maxResults": "1",
        "startPosition": "1",
        "Employee": {
            "Organization": "false",
            "Title": "Mrs.",
            "GivenName": "Jane",
            "MiddleName": "Lane",
            "FamilyName": "Doe",
            "DisplayName": "Jane Lane Doe",
            "PrintOnCheckName": "Jane Lane Doe",
            "Active": "true",
            "PrimaryPhone": {"FreeFormNumber": "505.555.9999"},
            "PrimaryEmailAddr": {"Address": "janedoe@example.com"},
            "EmployeeType": "Regular",
            "status": "Synchronized",
            "Id": "ABC123",
            "SyncToken": "1",
            "MetaData": {"CreateTime": "2015-04-26T19:45:03Z", "LastUpdatedTime": "2015-04-27T21:48:23Z"},
            "PrimaryAddr": {
                "Line1": "123 Any Street",
                "City": "Any City",
                "CountrySubDivisionCode": "WA",
                "PostalCode": "01234",
            },
        },
    },
    "time": "2015-04-27T22:12:32.012Z",
}
EMPLOYEE_OUT = """{
  "QueryResponse": {
    "maxResults": "1",
    "startPosition": "1",
    "Employees": [
      {
        "Title": "Mrs.",
        "GivenName": "Jane",
        "MiddleName": "Lane",
        "FamilyName": "Doe",
        "DisplayName": "Jane Lane Doe",
        "PrintOnCheckName": "Jane Lane Doe",
        "Active": "true",
        "PrimaryPhone": "505.555.9999",
        "Email": [ { "type": "primary", "Address": "janedoe@example.com" } ],
        "EmployeeType": "Regular",
        "PrimaryAddr": {
          "Line1": "123 Any Street",
          "City": "Any City",
          "CountrySubDivisionCode": "WA",
          "PostalCode": "01234"
        }
      }
    ]
  },
  "time": "2015-04-27T22:12:32.012Z"
}"""


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("/docs/articles", ARTICLE, ARTICLE_OUT),
        ("/docs/invoices", INVOICE, INVOICE_OUT),
        ("/docs/employees", EMPLOYEE, EMPLOYEE_OUT),
    ],
    ids=["news-article", "sales-invoice", "employee-record"],
)
def test_the_output_mapping_examples(
    served: tuple[Served, _Recorder], path: str, document: dict[str, Any], expected: str
) -> None:
    assert _ordered(_post(served, path, document)[2]) == _ordered(expected)


# --- the "$input variables" reference -----------------------------------------------------------


def test_the_input_reference_things_example(served: tuple[Served, _Recorder]) -> None:
    """``.size()`` of a JSON object is its number of members. AWS's page prints ``things`` as
    plain JSON, but ``$util.escapeJavaScript`` escapes double quotes (AWS's own definition of
    the function: JavaScript string rules), so what is sent is the escaped text."""
    _, _, body = _post(served, "/docs/things/abc", {"things": {"1": {}, "2": {}, "3": {}}})
    assert body == (b'{\n    "id" : "abc",\n    "count" : "3",\n    "things" : {\\"1\\":{},\\"2\\":{},\\"3\\":{}}\n}\n')


def test_the_input_reference_json_example(served: tuple[Served, _Recorder]) -> None:
    document = {"mykey": {"a": [1, True, None]}, "note": 'it\'s "quoted"'}
    _, path, body = _post(served, "/docs/names?name=Ada%20L", document)
    assert path == "/names?name=Ada%20L"
    assert json.loads(body) == {"name": "Ada L", "body": document}


def test_the_input_reference_parameter_mapping_example(served: tuple[Served, _Recorder]) -> None:
    _, _, body = _post(served, "/docs/params/cats?page=2&sort=name", {}, **{"X-Quote": 'say "hi"'})
    params = _ordered(body)[0][1]
    # The page prints only an outline of the output ("..." members, header before querystring);
    # what is checked is that every parameter arrives, in valid JSON, in $input.params()'s order.
    assert [name for name, _ in params] == ["path", "querystring", "header"]
    path, query, header = (dict(values) for _, values in params)
    assert path == {"kind": "cats"}
    assert query == {"page": "2", "sort": "name"}
    assert header["X-Quote"] == 'say "hi"'  # escapeJavaScript kept the JSON valid
    assert header["Content-Type"] == "application/json"
