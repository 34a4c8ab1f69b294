"""Response mapping: JSONPath, XPath and CLI patterns over vendor answers."""
from __future__ import annotations

import json

import pytest

from nfp.drivers.config.dictionary import mapping
from nfp.drivers.config.dictionary.errors import VendorError
from nfp.drivers.config.dictionary.model import ResponseMapping

PF_LIST = json.dumps({"code": 200, "status": "ok", "data": [
    {"id": 0, "tracker": 111, "descr": "nfp-aaaa web: x", "source": "198.18.0.0/24"},
    {"id": 1, "tracker": 222, "descr": "manual", "source": "any"}]}).encode()
PAN_ERROR = b'<response status="error" code="403"><result><msg>Invalid Credential</msg></result></response>'
PAN_JOB = b'<response status="success" code="19"><result><msg><line>enqueued</line></msg><job>7</job></result></response>'


def test_json_list_and_id():
    rm = ResponseMapping.model_validate({"listPath": "$.data[*]", "item": {
        "idPath": "$.tracker", "refPath": "$.id", "keyPath": "$.descr", "srcPath": "$.source"}})
    items = mapping.extract_list(rm, "json", mapping.parse_document("json", PF_LIST))
    assert items == [{"id": "111", "ref": 0, "key": "nfp-aaaa web: x", "src": "198.18.0.0/24"},
                     {"id": "222", "ref": 1, "key": "manual", "src": "any"}]
    rm = ResponseMapping.model_validate({"idPath": "$.data[0].tracker"})
    assert mapping.extract_id(rm, "json", mapping.parse_document("json", PF_LIST)) == "111"


def test_json_error_with_vendor_code_and_tolerance():
    doc = {"code": 404, "response_id": "MODEL_OBJECT_NOT_FOUND", "message": "Object with ID `3` does not exist."}
    rm = ResponseMapping.model_validate({"successCode": 200, "errorPath": "$.message",
                                         "errorCodePath": "$.response_id"})
    with pytest.raises(VendorError) as info:
        mapping.check_http(rm, "json", 404, doc, json.dumps(doc), "pfsense delete")
    assert info.value.code == "MODEL_OBJECT_NOT_FOUND" and "does not exist" in str(info.value)
    assert "HTTP 404" in str(info.value)
    tolerant = rm.model_copy(update={"tolerate": ["MODEL_OBJECT_NOT_FOUND"]})
    assert mapping.check_http(tolerant, "json", 404, doc, "", "x") is True
    assert mapping.check_http(rm, "json", 200, {}, "", "x") is False


def test_xml_success_path_error_and_job_id():
    rm = ResponseMapping.model_validate({"successPath": "/response/@status", "successValue": "success",
                                         "errorPath": "normalize-space(/response/result/msg)",
                                         "errorCodePath": "/response/@code", "idPath": "/response/result/job"})
    with pytest.raises(VendorError) as info:
        mapping.check_http(rm, "xml", 403, mapping.parse_document("xml", PAN_ERROR), "", "paloalto")
    assert "Invalid Credential" in str(info.value) and info.value.code == "403"
    doc = mapping.parse_document("xml", PAN_JOB)
    assert mapping.check_http(rm, "xml", 200, doc, "", "paloalto") is False
    assert mapping.extract_id(rm, "xml", doc) == "7"


def test_cli_patterns():
    rm = ResponseMapping.model_validate({"tolerate": ["Nothing to delete"], "listPatterns": [
        r"^set fw rule (?P<id>\d+) description '(?P<key>nfp-[0-9a-f]+)[^']*'",
        r"^set fw rule (?P<id>\d+) action '(?P<action>\w+)'"]})
    output = "set fw rule 10 action 'accept'\nset fw rule 10 description 'nfp-ab12 web'\nset fw rule 11 action 'drop'"
    assert mapping.extract_cli_list(rm, output) == [{"id": "10", "action": "accept", "key": "nfp-ab12"},
                                                    {"id": "11", "action": "drop"}]
    assert mapping.check_cli(rm, ["Set failed"], "delete x", "Nothing to delete (the node)\nDelete failed") is True
    with pytest.raises(VendorError) as info:
        mapping.check_cli(rm, ["Set failed"], "set fw rule 10 action bogus", "Invalid value\nSet failed")
    assert "set fw rule 10 action bogus" in str(info.value)


def test_bad_paths_are_refused():
    with pytest.raises(ValueError):
        mapping.compile_path("json", "$.[[")
    with pytest.raises(ValueError):
        mapping.compile_path("xml", "//[")
