"""Connection sections: the opcua/mqtt union on `kind`, their keys, and tag keys per kind.

Errors inside a union member must name the file's own keys (`connections.broker.port`),
never pydantic's member name (`connections.broker.mqtt.port`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.config import load_project
from hmi.config.connections import MqttAddress, MqttConnection, OpcUaAddress, OpcUaConnection
from tests.config.common import errors
from tests.helpers import REPO

BASE = """
[project]
name = "Line 1"

[connections.plc]
kind = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840"
security = "Basic256Sha256:SignAndEncrypt"
user = "hmi"
password_ref = "plc"

[connections.plc.groups.fast]
publishing_interval_ms = 10
deadband = { type = "percent", value = 0.5 }

[connections.broker]
kind = "mqtt"
host = "127.0.0.1"
port = 8883
protocol = "3.1.1"
user = "hmi"
password_ref = "broker"
tls = { ca = "certs/ca.pem" }
command_topic = "factory/{machine}/command"

[[connections.broker.subscriptions]]
topic = "factory/+/telemetry"
format = "json"
tag = "{topic[1]}.{key}"
qos = 1

[[connections.broker.subscriptions]]
topic = "factory/+/status"
format = "status"

[machines.cnc01]
[machines.pump01]

[tags."cnc01.speed"]
connection = "plc"
address = "ns=2;s=Speed"
group = "fast"
deadband = { type = "absolute", value = 1.0 }

[tags."cnc01.axes"]
connection = "plc"
address = "ns=2;s=Axes"
index = 2

[tags."pump01.flow"]
connection = "broker"

[tags."pump01.pressure"]
connection = "broker"
address = "plant/pump01"
json_path = "$.hydraulics.pressure"
"""


def test_both_kinds_load_with_their_keys(tmp_path: Path) -> None:
    """An OPC UA and an MQTT connection with security, groups, TLS and subscriptions load as their own types."""
    path = tmp_path / "project.toml"
    path.write_text(BASE, encoding="utf-8")
    project = load_project(path)
    plc, broker = project.connections["plc"], project.connections["broker"]
    assert isinstance(plc, OpcUaConnection) and isinstance(broker, MqttConnection)
    assert (plc.security_policy, plc.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    assert plc.groups["fast"].deadband is not None and plc.groups["fast"].deadband.type == "percent"
    assert broker.tls_config is not None and broker.tls_config.ca == "certs/ca.pem"
    assert [s.format for s in broker.subscriptions] == ["json", "status"]
    specs = {s.name: s for s in project.tag_specs()}
    speed, axes = OpcUaAddress.of(specs["cnc01.speed"]), OpcUaAddress.of(specs["cnc01.axes"])
    assert speed.group == "fast" and axes.index == 2
    assert MqttAddress.of(specs["pump01.pressure"]).json_path == "$.hydraulics.pressure"


BROKEN = {
    "mqtt key error keeps the file's path": (
        BASE.replace("port = 8883", "port = 70000"),
        ["connections.broker.port: Input should be less than or equal to 65535"],
    ),
    "unknown key in an mqtt connection": (
        BASE.replace('protocol = "3.1.1"', 'protocoll = "3.1.1"'),
        ["connections.broker.protocoll: unknown key (check the spelling)"],
    ),
    "missing kind": (
        BASE.replace('kind = "mqtt"\n', ""),
        ["connections.broker.kind: required key is missing"],
    ),
    "unknown security": (
        BASE.replace("Basic256Sha256:SignAndEncrypt", "Basic128:Sign"),
        [
            "connections.plc.security: unknown security 'Basic128:Sign' (use None or one of Basic256Sha256:Sign, "
            "Basic256Sha256:SignAndEncrypt, Aes128Sha256RsaOaep:Sign, Aes128Sha256RsaOaep:SignAndEncrypt, "
            "Aes256Sha256RsaPss:Sign, Aes256Sha256RsaPss:SignAndEncrypt)"
        ],
    ),
    "a password in the file": (
        BASE.replace('password_ref = "plc"', 'password = "secret"'),
        ["connections.plc.password: unknown key (check the spelling)"],
    ),
    "password_ref without user": (
        BASE.replace('user = "hmi"\npassword_ref = "plc"', 'password_ref = "plc"'),
        ["connections.plc: password_ref needs a user"],
    ),
    "bad topic filter": (
        BASE.replace("factory/+/telemetry", "factory/#/telemetry"),
        ["connections.broker.subscriptions[0].topic: '#' must be a whole level at the end of a topic filter"],
    ),
    "subscription without template": (
        BASE.replace('tag = "{topic[1]}.{key}"\n', ""),
        ["connections.broker.subscriptions[0]: a json subscription needs a tag template (tag = ...)"],
    ),
    "client certificate without key": (
        BASE.replace('tls = { ca = "certs/ca.pem" }', 'tls = { cert = "c.pem" }'),
        ["connections.broker.tls: a client certificate needs both cert and key"],
    ),
    "unknown group": (
        BASE.replace('group = "fast"', 'group = "fastest"'),
        ["tags.\"cnc01.speed\".group: unknown group 'fastest' of connection 'plc' (fast)"],
    ),
    "json_path on an OPC UA tag": (
        BASE.replace("index = 2", 'json_path = "a"'),
        ["tags.\"cnc01.axes\".json_path: json_path is for MQTT tags; 'plc' is OPC UA"],
    ),
    "index on an MQTT tag": (
        BASE.replace('json_path = "$.hydraulics.pressure"', "index = 1"),
        ["tags.\"pump01.pressure\".index: index is for OPC UA tags; 'broker' is MQTT"],
    ),
    "wildcard in an MQTT tag address": (
        BASE.replace('address = "plant/pump01"', 'address = "plant/+"'),
        ['tags."pump01.pressure".address: an MQTT tag\'s address is one topic, without wildcards'],
    ),
    "both endpoint and endpoints": (
        BASE.replace(
            'endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoint = "opc.tcp://a:4840"\nendpoints = ["opc.tcp://b:4840"]'
        ),
        ["connections.plc: give either endpoint (one server) or endpoints (redundant servers), not both"],
    ),
    "empty endpoints": (
        BASE.replace('endpoint = "opc.tcp://127.0.0.1:4840"', "endpoints = []"),
        ["connections.plc.endpoints: List should have at least 1 item after validation, not 0"],
    ),
    "an endpoint twice": (
        BASE.replace('endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoints = ["opc.tcp://a:4840", "opc.tcp://a:4840"]'),
        ["connections.plc.endpoints: an endpoint is listed twice"],
    ),
    "not an OPC UA endpoint in endpoints": (
        BASE.replace('endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoints = ["opc.tcp://a:4840", "http://b"]'),
        ["connections.plc.endpoints: an OPC UA endpoint starts with opc.tcp://"],
    ),
    "both host and brokers": (
        BASE.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nbrokers = ["b:1883"]'),
        ["connections.broker: give either host (one broker) or brokers (redundant brokers), not both"],
    ),
    "empty brokers": (
        BASE.replace('host = "127.0.0.1"', "brokers = []"),
        ["connections.broker.brokers: List should have at least 1 item after validation, not 0"],
    ),
    "a broker without a port number": (
        BASE.replace('host = "127.0.0.1"', 'brokers = ["a:1883", "b:mqtt"]'),
        ["connections.broker.brokers: 'b:mqtt' is not host:port"],
    ),
    "OPC UA tag without address": (
        BASE.replace('address = "ns=2;s=Axes"\n', ""),
        ['tags."cnc01.axes".address: an OPC UA tag needs an address (its NodeId)'],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_connection_message(tmp_path: Path, case: str) -> None:
    """Each broken connection or tag key yields exactly this `dotted.key.path: message`."""
    text, expected = BROKEN[case]
    assert errors(tmp_path, text) == expected


def test_demo_mqtt_project_is_valid() -> None:
    """config/demo-mqtt.toml describes all five demo machines over MQTT and loads cleanly."""
    project = load_project(REPO / "config" / "demo-mqtt.toml")
    assert set(project.machines) == {"cnc01", "robot01", "conveyor01", "cmm01", "pump01"}
    assert all(isinstance(c, MqttConnection) for c in project.connections.values())
    assert {t.split(".")[0] for t in project.tags} == set(project.machines)
