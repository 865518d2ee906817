"""Fixtures the signing tests share."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysbx.signing.keys import generate_key_pair


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Verification is offline: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("verification tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def write_key_pairs(folder: Path, *names: str) -> dict[str, Path]:
    """NAME.key and NAME.pub in `folder` for each name; returns folder/NAME by name."""
    paths = {}
    for name in names:
        pair = generate_key_pair()
        (folder / f"{name}.key").write_bytes(pair.private_pem)
        (folder / f"{name}.pub").write_bytes(pair.public_pem)
        paths[name] = folder / name
    return paths
