"""Dictionaries as seed 000's authors write them: service names, System.commit,
method: SSH, ssh_password, capabilities/notes/errorCodes, unknown keys as warnings
(--strict: errors), one clear error for a file that is no dictionary."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from nfp.cli.dictionary import dictionary
from nfp.drivers.config.dictionary import loader, mapping
from nfp.drivers.config.dictionary.errors import DictionaryError, VendorError
from nfp.drivers.config.dictionary.model import ResponseMapping

ACME = Path(__file__).parents[1] / "fixtures" / "dictionaries" / "acmefw.yaml"
HTTP_SEED = textwrap.dedent("""\
    version: "1.0"
    vendor: "Example"
    product: "PA-like"
    access:
      protocol: https
      authType: token
      tokenRef: API_KEY
      tokenHeader: X-API-KEY
      responseFormat: xml
    services:
      Firewall:
        create:
          method: POST
          endpoint: /api/?type=config&action=set&name=${ruleId}
          responseMapping:
            successCode: 200
            successPattern: "<response status=\\"success\\">"
        delete:
          method: POST
          endpoint: /api/?type=config&action=delete&name=${externalId}
      SourceNAT:
        create: {method: POST, endpoint: "/api/snat/${ruleId}?src=${privateNetwork}"}
        delete: {method: POST, endpoint: "/api/snat/${externalId}"}
      VPN:
        create: {method: POST, endpoint: /api/vpn}
      System:
        commit:
          method: POST
          endpoint: /api/?type=commit
    capabilities: [firewall, nat]
    notes: |
      Commit after every change.
    errorCodes:
      "12": already_exists
      "404": not_found
    """)


def test_the_seed_authors_format_loads_with_nfp_names():
    loaded = loader.parse(HTTP_SEED, "example.yaml")
    model = loaded.model
    assert set(model.services) == {"Firewall", "SourceNat", "VPN"}
    assert model.commit is not None and model.commit.endpoint == "/api/?type=commit"
    assert model.capabilities == ["firewall", "nat"] and model.notes.startswith("Commit")
    assert model.error_codes == {"12": "already_exists", "404": "not_found"}
    assert loader.deep_check(loaded) == [] and loaded.warnings == []
    # errors name the author's key and line, not nfp's
    assert loaded.line_of(("services", "SourceNat", "create")) == 22
    assert loaded.line_of(("commit",)) == 27


def test_ssh_endpoint_becomes_cli_commands_wrapped_by_nfp():
    loaded = loader.load_file(ACME)
    assert loaded.name == "acmefw" and loaded.model.access.auth_type == "password"
    create = loaded.model.services["Firewall"].create
    assert create.configure is True and create.success_pattern == "Saving configuration to"
    assert not create.command_template.startswith("configure") and "commit" not in create.command_template
    assert loaded.model.access.cli.commit == ["commit", "save"]
    assert loaded.model.services["Firewall"].list.configure is False
    assert set(loaded.model.services) == {"Firewall", "PortForwarding", "StaticRoutes"}


def test_unknown_keys_warn_with_file_line_and_strict_rejects(tmp_path):
    text = HTTP_SEED.replace("capabilities:", "maintainer: acme\ncapabilities:").replace(
        "      endpoint: /api/?type=commit\n", "      endpoint: /api/?type=commit\n      retryOn: 500\n")
    loaded = loader.parse(text, "warn.yaml")
    assert sorted((w.key, w.line) for w in loaded.warnings) == [("maintainer", 31),
                                                                ("services.System.commit.retryOn", 30)]
    path = tmp_path / "warn.yaml"
    path.write_text(text)
    relaxed = CliRunner().invoke(dictionary, ["validate", str(path)])
    assert relaxed.exit_code == 0 and f"{path}:31: maintainer: unknown key" in relaxed.output
    strict = CliRunner().invoke(dictionary, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1 and f"{path}:31: maintainer: unknown key" in strict.output


@pytest.mark.parametrize("text, line", [
    ("heat_template_version: 2018-08-31\nresources: {}\n", 1),
    ("# a comment\n\nopenapi: 3.0.0\npaths: {}\n", 3),
    ("- a\n- b\n", 1),
])
def test_a_file_that_is_no_dictionary_gets_one_clear_error(text, line):
    with pytest.raises(DictionaryError) as info:
        loader.parse(text, "other.yaml")
    (issue,) = info.value.issues
    assert issue.line == line and "not a vendor dictionary" in issue.message
    assert str(issue).startswith(f"other.yaml:{line}:")


def test_malformed_seed_dictionaries_name_file_line_key_reason():
    (issue,) = _issues(HTTP_SEED.replace("authType: token", "authType: ssh_pasword"))
    assert str(issue).startswith("bad.yaml:6: access.authType:")
    (issue,) = _issues(HTTP_SEED.replace("  VPN:", "  vpn:"))
    assert issue.key == "services" and "must match" in issue.message
    (issue,) = _issues(HTTP_SEED.replace('"404": not_found', '"404": gone'))
    assert issue.key == "errorCodes.404" and issue.line == 35
    (issue,) = _issues(HTTP_SEED.replace("  VPN:", "  PortForwarding:\n    create: {method: GET, endpoint: /x}\n    delete: {method: GET, endpoint: /x}\n  NAT:"))
    assert issue.key == "services.NAT" and "same service" in issue.message
    issues = _issues(HTTP_SEED.replace("    delete:\n      method: POST\n      endpoint: /api/?type=config&action=delete&name=${externalId}\n", ""))
    assert [(i.key, "create and delete" in i.message) for i in issues] == [("services.Firewall", True)]


def _issues(text):
    with pytest.raises(DictionaryError) as info:
        loader.parse(text, "bad.yaml")
    return info.value.issues


def test_error_codes_name_the_kind_in_the_failure_and_done_kinds_count_as_success():
    rm = ResponseMapping(errorCodePath="/response/code")
    doc = mapping.parse_document("xml", b"<response><code>12</code></response>")
    with pytest.raises(VendorError) as info:
        mapping.check_http(rm, "xml", 400, doc, "", "acme create", {"12": "already_exists"})
    assert info.value.kind == "already_exists" and "already_exists" in str(info.value)
    assert mapping.check_http(rm, "xml", 400, doc, "", "x", {"12": "already_exists"},
                              frozenset({"already_exists"})) is True
    with pytest.raises(VendorError) as info:
        mapping.check_cli(ResponseMapping(), [], "delete x", "Nothing to delete", {"Nothing to delete": "not_found"})
    assert "(not_found)" in str(info.value)
    assert mapping.check_cli(ResponseMapping(), [], "delete x", "Nothing to delete",
                             {"Nothing to delete": "not_found"}, frozenset({"not_found"})) is True
    # seed successPattern inside responseMapping applies to HTTP answers
    ok = ResponseMapping(successPattern='status="success"')
    assert mapping.check_http(ok, "xml", 200, None, '<response status="success"/>', "x") is False
    with pytest.raises(VendorError):
        mapping.check_http(ok, "xml", 200, None, '<response status="error"/>', "x")


def test_show_prints_seed_names_capabilities_and_notes(tmp_path):
    from nfp.db import all_models
    from nfp.db.engine import make_engine
    url = f"sqlite:///{tmp_path / 'nfp.db'}"
    all_models().create_all(make_engine(url))
    runner = CliRunner()
    assert "acmefw: stored as version 1" in runner.invoke(dictionary, ["load", str(ACME), "--database-url", url]).output
    shown = runner.invoke(dictionary, ["show", "acmefw", "--database-url", url]).output
    assert "PortForwarding  create, delete, list (written NAT)" in shown
    assert "capabilities: firewall, portforwarding, routing" in shown and "commit/save model" in shown
