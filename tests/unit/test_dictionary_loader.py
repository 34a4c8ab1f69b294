"""Dictionary loading: the shipped four, the seed's format, errors with file:line:key, the cache."""
from __future__ import annotations

import textwrap

import pytest

from nfp.drivers.config.dictionary import loader
from nfp.drivers.config.dictionary.errors import DictionaryError

SEED_EXAMPLE = textwrap.dedent("""\
    version: "1.0"
    vendor: "Netgate"
    product: "pfSense"
    firmware_version: "2.7+"
    access:
      protocol: https
      port: 443
      basePath: /api/v1
      authType: token
      tokenRef: API_TOKEN
      tokenHeader: Authorization
    services:
      Firewall:
        create:
          method: POST
          endpoint: /firewall/rule
          headers:
            Content-Type: application/json
          body: |
            {
              "protocol": "${protocol}",
              "src": "${sourceCidr}",
              "dst": "any",
              "dstport": "${startPort}",
              "descr": "CloudStack rule ${ruleId}"
            }
          responseMapping:
            successCode: 201
            idPath: $.data.id
        delete:
          method: DELETE
          endpoint: /firewall/rule/${externalId}
          responseMapping:
            successCode: 200
        list:
          method: GET
          endpoint: /firewall/rule
          responseMapping:
            successCode: 200
            listPath: $.data
            item:
              idPath: $.id
              srcPath: $.src
              dstportPath: $.dstport
    """)


@pytest.mark.parametrize("vendor", ["pfsense", "fortigate", "paloalto", "vyos"])
def test_shipped_dictionaries_are_valid(vendor):
    loaded = loader.load_shipped(vendor)
    assert loaded.name == vendor
    assert {"Firewall", "PortForwarding"} <= set(loaded.model.services)
    assert loader.deep_check(loaded) == []


def test_the_seed_format_is_accepted():
    loaded = loader.parse(SEED_EXAMPLE, "seed.yaml")
    firewall = loaded.model.services["Firewall"]
    assert firewall.create.response_mapping.success_codes == (201,)
    assert firewall.list.response_mapping.item["dstportPath"] == "$.dstport"
    assert loaded.model.access.token_header == "Authorization"
    assert loader.deep_check(loaded) == []


def _issue(text: str):
    with pytest.raises(DictionaryError) as info:
        loader.parse(text, "broken.yaml")
    return info.value.issues


def test_schema_error_names_file_line_and_key():
    (issue,) = _issue(SEED_EXAMPLE.replace("authType: token", "authType: magic"))
    assert (issue.source, issue.line, issue.key) == ("broken.yaml", 9, "access.authType")
    assert "magic" in issue.message or "token" in issue.message
    assert str(issue).startswith("broken.yaml:9: access.authType:")


def test_unknown_placeholder_names_its_template():
    (issue,) = _issue(SEED_EXAMPLE.replace("${sourceCidr}", "${sourceCdir}"))
    assert issue.key == "services.Firewall.create.body" and issue.line == 19
    assert "${sourceCdir}" in issue.message


def test_yaml_syntax_error_has_its_line():
    (issue,) = _issue(SEED_EXAMPLE.replace("  port: 443", "  port: [443"))
    assert issue.line >= 7 and "YAML syntax" in issue.message


def test_missing_delete_and_bad_regex_are_reported():
    start, end = SEED_EXAMPLE.index("    delete:"), SEED_EXAMPLE.index("    list:")
    (issue,) = _issue(SEED_EXAMPLE[:start] + SEED_EXAMPLE[end:])
    assert issue.key == "services.Firewall" and "create and delete" in issue.message
    (issue,) = _issue(SEED_EXAMPLE.replace("        listPath: $.data\n",
                                           "        listPath: $.data\n        errorPatterns: ['(']\n"))
    assert issue.key == "services.Firewall.list.responseMapping.errorPatterns" and issue.line == 41


def test_deep_check_finds_template_syntax_and_bad_paths():
    text = SEED_EXAMPLE.replace('"dst": "any",', '"dst": "{% if %}",').replace("idPath: $.data.id", "idPath: $.[[")
    issues = loader.deep_check(loader.parse(text, "deep.yaml"))
    assert {i.key for i in issues} == {"services.Firewall.create.body",
                                       "services.Firewall.create.responseMapping.idPath"}
    assert all(i.line > 1 for i in issues)


def test_delete_templates_may_only_use_what_delete_knows():
    text = SEED_EXAMPLE.replace("/firewall/rule/${externalId}", "/firewall/rule/${sourceCidr}")
    issues = loader.deep_check(loader.parse(text, "del.yaml"))
    assert [i.key for i in issues] == ["services.Firewall.delete.endpoint"]


def test_parse_is_cached_by_content():
    loader.clear_cache()
    first = loader.parse(SEED_EXAMPLE, "seed.yaml")
    assert loader.parse(SEED_EXAMPLE, "seed.yaml") is first
    assert loader.parse(SEED_EXAMPLE + "\n# changed\n", "seed.yaml") is not first
