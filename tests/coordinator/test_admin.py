"""DescribeGroups and ListGroups, field by field, and their wire shapes."""

from __future__ import annotations

from typing import Any

import pytest

from metamorphostreams.protocol._generated.describe_groups import DescribeGroupsRequest
from metamorphostreams.protocol._generated.list_groups import ListGroupsRequest
from metamorphostreams.protocol.errors import ErrorCode

from .helpers import Harness, form_group
from .test_consumer_group import Client


def describe(h: Harness, *groups: str, version: int = 5) -> dict[str, Any]:
    resp = h.call("describe_groups", DescribeGroupsRequest(groups=list(groups)), version).response
    decoded = type(resp).decode(resp.to_bytes(version), version)
    return {g.group_id: g for g in decoded.groups}


def list_groups(
    h: Harness, version: int = 5, states: list[str] | None = None, types: list[str] | None = None
) -> set[tuple[str, str, str, str]]:
    req = ListGroupsRequest(states_filter=states or [], types_filter=types or [])
    resp = h.call("list_groups", req, version).response
    decoded = type(resp).decode(resp.to_bytes(version), version)
    assert decoded.error_code == 0
    return {(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in decoded.groups}


def populated() -> tuple[Harness, list[str]]:
    h = Harness()
    g = form_group(h, 2, protocols=[("range", b"RANGE-META")], client_id="app")
    h.commit("simple", {("orders", 0): 1})
    Client(h, "k1", group="kip848").heartbeat()
    return h, g.members


def test_describe_stable_classic_group() -> None:
    h, members = populated()
    g = describe(h, "g")["g"]
    assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (
        0,
        "Stable",
        "consumer",
        "range",
    )
    described = {m.member_id: m for m in g.members}
    assert set(described) == set(members)
    m = described[members[0]]
    assert (m.client_id, m.client_host, m.member_metadata) == ("app", "/10.0.0.1", b"RANGE-META")
    assert m.member_assignment == h.classic().members[members[0]].assignment


def test_describe_rebalancing_group_has_no_metadata() -> None:
    h, members = populated()
    h.join("g", members[0], protocols=[("range", b"NEW")])
    g = describe(h, "g")["g"]
    assert (g.group_state, g.protocol_data) == ("PreparingRebalance", "")
    assert all(m.member_metadata == b"" for m in g.members)


@pytest.mark.parametrize("version", [0, 3, 5])
def test_describe_unknown_and_non_classic_before_v6(version: int) -> None:
    h, _ = populated()
    got = describe(h, "missing", "kip848", "simple", version=version)
    assert (got["missing"].error_code, got["missing"].group_state) == (0, "Dead")
    assert (got["kip848"].error_code, got["kip848"].group_state) == (0, "Dead")
    assert (got["simple"].group_state, got["simple"].protocol_type, got["simple"].members) == (
        "Empty",
        "",
        [],
    )


def test_describe_v6_errors() -> None:
    h, _ = populated()
    got = describe(h, "missing", "kip848", version=6)
    missing, kip = got["missing"], got["kip848"]
    assert (missing.error_code, missing.error_message, missing.group_state) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group missing not found.",
        "Dead",
    )
    assert (kip.error_code, kip.error_message) == (
        ErrorCode.GROUP_ID_NOT_FOUND,
        "Group kip848 is not a classic group.",
    )


def test_list_groups_all_versions() -> None:
    h, _ = populated()
    everything = {
        ("g", "consumer", "Stable", "classic"),
        ("simple", "", "Empty", "classic"),
        ("kip848", "consumer", "Stable", "consumer"),
    }
    assert list_groups(h) == everything
    for version in range(0, 5):
        assert {g[:2] for g in list_groups(h, version)} == {g[:2] for g in everything}


def test_list_groups_filters() -> None:
    h, _ = populated()
    assert {g[0] for g in list_groups(h, 4, states=["stable"])} == {"g", "kip848"}
    assert {g[0] for g in list_groups(h, 4, states=[" EMPTY "])} == {"simple"}
    assert {g[0] for g in list_groups(h, 5, types=["Consumer"])} == {"kip848"}
    assert {g[0] for g in list_groups(h, 5, types=["classic"], states=["Empty"])} == {"simple"}
    assert list_groups(h, 5, types=["share"]) == set()
    assert list_groups(h, 5, types=["bogus"]) == set()
    assert {g[0] for g in list_groups(h, 3, states=["empty"])} == {
        "g",
        "simple",
        "kip848",
    }  # no filter before v4
