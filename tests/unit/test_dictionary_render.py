"""Rendering: typed placeholders and per-context escaping. Injection attempts in
every placeholder type are rejected (typed) or neutralised (escaped), per context."""
from __future__ import annotations

import json
import shlex
import urllib.parse

import pytest
from lxml import etree

from nfp.drivers.config.dictionary import placeholders
from nfp.drivers.config.dictionary.errors import PlaceholderError
from nfp.drivers.config.dictionary.model import Call, Param
from nfp.drivers.config.dictionary.render import TemplateProblem, render, render_cli, render_http

ATTACKS = ['"; delete firewall', "</entry><entry name='evil'>", "$(reboot)", "`reboot`",
           "a' ; rm -rf / ; echo '", "x\\\"}, {\"admin\": true, \"y\": \"", "../../admin?x=1#f", "&amp;<!--"]

#: typed placeholders refuse anything that is not their type
TYPED = {"sourceCidr": "cidr", "privateIp": "ip", "publicPort": "port", "destPorts": "port_range",
         "protocol": "protocol", "name": "name", "ruleId": "ident", "outboundInterface": "ifname",
         "action": "action", "healthDelay": "int", "enabled": "bool"}


@pytest.mark.parametrize("placeholder", sorted(TYPED))
@pytest.mark.parametrize("attack", ATTACKS)
def test_typed_placeholders_reject_injection(placeholder, attack):
    with pytest.raises(PlaceholderError) as info:
        placeholders.check(placeholder, TYPED[placeholder], "10.0.0.0/24" + attack if TYPED[placeholder] == "cidr" else attack)
    assert info.value.name == placeholder


def test_text_placeholders_refuse_control_characters():
    with pytest.raises(PlaceholderError):
        placeholders.check("description", "text", "line1\nset system login user evil")


@pytest.mark.parametrize("attack", ATTACKS)
def test_json_context_keeps_the_structure(attack):
    call = Call(method="POST", endpoint="/rule", headers={"Content-Type": "application/json"},
                body='{"descr": "${description}", "port": ${startPort}, "enabled": ${enabled}}')
    request = render_http(call, {"description": attack, "startPort": 80, "enabled": True})
    body = json.loads(request.body)
    assert body == {"descr": attack, "port": 80, "enabled": True}


def test_json_context_outside_quotes_cannot_add_keys():
    call = Call(method="POST", endpoint="/r", body='{"port": ${description}}')
    with pytest.raises(TemplateProblem) as info:
        render_http(call, {"description": '80, "admin": true'})
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("attack", ATTACKS)
def test_xml_context_keeps_the_structure(attack):
    call = Call(method="POST", endpoint="/api/", form={
        "element": Param(value="<entry name='${description}'><description>${description}</description></entry>",
                         context="xml")})
    request = render_http(call, {"description": attack})
    root = etree.fromstring(f"<r>{request.data['element']}</r>")
    (entry,) = root.findall("entry")
    assert entry.get("name") == attack and entry.findtext("description") == attack
    assert len(root) == 1 and len(entry) == 1


def test_xpath_context_refuses_quotes():
    call = Call(method="POST", endpoint="/api/", form={
        "xpath": Param(value="/config/rules/entry[@name='${description}']", context="xpath")})
    with pytest.raises(PlaceholderError):
        render_http(call, {"description": "x' or '1'='1"})


@pytest.mark.parametrize("attack", ATTACKS + [".."])
def test_url_context_is_one_path_segment(attack):
    call = Call(method="DELETE", endpoint="/firewall/rule/${description}/x?vdom=${vsys}")
    request = render_http(call, {"description": attack, "vsys": "root&admin=1"}, base_path="/api/v2")
    path, _, query = request.path.partition("?")
    segments = path.split("/")
    assert segments[:4] == ["", "api", "v2", "firewall"] and segments[-1] == "x" and len(segments) == 7
    assert urllib.parse.unquote(segments[5]) == attack
    assert urllib.parse.parse_qs(query) == {"vdom": ["root&admin=1"]}


@pytest.mark.parametrize("attack", ATTACKS)
def test_cli_context_is_one_argument(attack):
    call = Call(commands="set firewall rule ${ruleNumber} description ${description}")
    (line,) = render_cli(call, {"ruleNumber": 10, "description": attack})
    assert shlex.split(line) == ["set", "firewall", "rule", "10", "description", attack]


def test_cli_context_refuses_newlines_and_drops_lines_without_value():
    call = Call(commands="set a ${description}\nset b ${sourceCidr}\nset c x")
    with pytest.raises(PlaceholderError):
        render_cli(call, {"description": "ok\ncommit", "sourceCidr": None})
    assert render_cli(call, {"description": "ok", "sourceCidr": None}) == ["set a ok", "set c x"]


def test_filters_render_vendor_formats():
    call = Call(method="POST", endpoint="/a", body='{"s": "${sourceCidr|netmask}", "p": "${destPorts|ports}", '
                                                   '"h": "${destCidr|host}", "n": ${sourcePorts|json}}')
    body = json.loads(render_http(call, {"sourceCidr": "198.18.0.0/15", "destPorts": "80:90",
                                         "destCidr": "198.18.0.5/32", "sourcePorts": None}).body)
    assert body == {"s": "198.18.0.0 255.254.0.0", "p": "80-90", "h": "198.18.0.5", "n": None}


def test_unknown_placeholder_at_render_names_the_template():
    with pytest.raises(TemplateProblem) as info:
        render("json", '{"a": "${nope}"}', {}, "services.Firewall.create.body")
    assert info.value.where == "services.Firewall.create.body"


def test_a_template_that_does_not_compile_is_reported_where_it_is():
    call = Call(method="POST", endpoint="/r", body='{"a": "{% if %}"}')
    with pytest.raises(TemplateProblem) as info:
        render_http(call, {}, where="services.Firewall.create")
    assert info.value.where == "services.Firewall.create.body" and "line 1" in str(info.value)


def test_prepared_calls_render_fresh_values_each_time():
    call = Call(method="PUT", endpoint="/rule/${name}", body='{"d": "${description}"}')
    first = render_http(call, {"name": "a", "description": "x"})
    second = render_http(call, {"name": "b b", "description": 'y"'})
    assert (first.path, json.loads(first.body)) == ("/rule/a", {"d": "x"})
    assert (second.path, json.loads(second.body)) == ("/rule/b%20b", {"d": 'y"'})
    assert first.headers == second.headers == {"Content-Type": "application/json"}
    second.headers["X"] = "changed"
    assert render_http(call, {"name": "c", "description": ""}).headers == {"Content-Type": "application/json"}


@pytest.mark.parametrize("text", ["198.18.0.0/24", "198.18.0.5/24", "198.18.7.9", "0.0.0.0/0", "1.2.3.4/31",
                                  "255.255.255.255/32", "2001:db8::1/64", "::1", "10.0.0.1/255.255.255.0",
                                  "198.18.200.1/17"])
def test_address_checks_and_filters_agree_with_ipaddress(text):
    import ipaddress
    net = ipaddress.ip_network(text, strict=False)
    assert placeholders.check("sourceCidr", "cidr", text) == str(net)
    call = Call(method="POST", endpoint="/a", body='{"m": "${c|netmask}", "a": "${c|address}", '
                                                   '"p": ${c|prefixlen}, "h": "${c|host}"}')
    body = json.loads(render_http(call, {"c": text}).body)
    assert body == {"m": f"{net.network_address} {net.netmask}", "a": str(net.network_address),
                    "p": net.prefixlen, "h": str(net.network_address) if net.num_addresses == 1 else str(net)}


@pytest.mark.parametrize("text", ["256.1.1.1/24", "1.2.3.4/33", "01.2.3.4/8", "1.2.3/8", "1.2.3.4/", "1.2.3.4 /8"])
def test_malformed_networks_are_refused(text):
    with pytest.raises(PlaceholderError):
        placeholders.check("sourceCidr", "cidr", text)


@pytest.mark.parametrize("text", ["256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4/32", "1.2.3.4 ", "::g"])
def test_malformed_addresses_are_refused(text):
    with pytest.raises(PlaceholderError):
        placeholders.check("privateIp", "ip", text)
