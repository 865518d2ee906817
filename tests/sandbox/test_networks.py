"""Network definitions (sandbox.networks), as a hostile hand could shape them: a name that
is a path or a mode, a definition file edited so that what netavark and iptables are given
(its bridge name, id, subnet) is not what pysandbox writes, overlapping subnets, and the
address pool handed out one at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pysbx.sandbox import networks


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("PYSANDBOX_STATE", str(root))
    return root


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "x" * 65, "é", "-x"])
def test_a_name_that_is_not_a_network_name_is_refused_and_writes_nothing(storage: Path, name: str) -> None:
    with pytest.raises(networks.NetworkError, match="invalid network name"):
        networks.create(name)
    assert not (storage / "networks").exists() or list((storage / "networks").iterdir()) == []


@pytest.mark.parametrize("name", ["host", "none", "bridge", "pasta", "loopback"])
def test_a_mode_cannot_be_a_networks_name(storage: Path, name: str) -> None:
    with pytest.raises(networks.NetworkError, match="is reserved"):
        networks.create(name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("network_interface", "eth0"),  # another interface of the keeper's, not a pysbxN bridge
        ("network_interface", "pysbx1 ; iptables -F"),
        ("id", "not-hex"),
        ("name", "other"),  # a file of one name defining another network
        ("subnets", [{"subnet": "10.89.1.0/24", "gateway": "10.90.0.1"}]),  # a gateway outside
        ("subnets", [{"subnet": "fd00::/64", "gateway": "fd00::1"}]),
        ("driver", "macvlan"),
    ],
)
def test_a_definition_edited_by_hand_is_refused_naming_the_file(storage: Path, field: str, value: object) -> None:
    made = networks.create("app")
    path = Path(networks.folder()) / "app.json"
    path.write_text(json.dumps(made.definition() | {field: value}))
    with pytest.raises(networks.NetworkError, match=f"{path}: not a bridge network definition"):
        networks.load("app")


def test_subnets_do_not_overlap_and_addresses_come_one_at_a_time(storage: Path) -> None:
    first, second = networks.create("one"), networks.create("two")
    assert (first.subnet, second.subnet) == ("10.89.1.0/24", "10.89.2.0/24")
    assert first.interface != second.interface
    with pytest.raises(networks.NetworkError, match="overlaps network 'one'"):
        networks.create("three", subnet="10.89.1.128/25")
    pool = networks.container_addresses(networks.default_bridge().definition())
    assert [next(pool), next(pool)] == ["10.88.0.2", "10.88.0.3"]  # the gateway .1 is never handed out
    assert not isinstance(pool, list)
