"""components/core/engine.py recognises values in the forms the SDK's own serializers produce."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import struct_pb2
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components.core.engine import (
    WIRE_UNKNOWN,
    changed,
    contains_unknown,
    credential,
    is_secret,
    is_unknown,
    unknown_paths,
    unwrap_secrets,
)


def _round_trip(props: dict, keep_unknowns: bool) -> dict:
    """Serialize with the SDK as the engine's peer would, then deserialize as the provider host does."""

    async def go() -> struct_pb2.Struct:
        return await rpc.serialize_properties(props, {})

    return rpc.deserialize_properties(asyncio.run(go()), keep_unknowns)


def test_the_host_hands_check_and_diff_the_unknown_object() -> None:
    got = _round_trip({"a": WIRE_UNKNOWN, "b": ["x", WIRE_UNKNOWN], "c": "known"}, keep_unknowns=True)
    assert isinstance(got["a"], Unknown) and is_unknown(got["a"])
    assert not is_unknown(got["b"]) and contains_unknown(got["b"])
    assert not contains_unknown(got["c"])


def test_the_wire_sentinel_is_unknown_too() -> None:
    assert is_unknown(WIRE_UNKNOWN) and contains_unknown({"k": [WIRE_UNKNOWN]})
    assert not is_unknown("04da6b54") and not is_unknown(None)


def test_secrets_arrive_wrapped_and_unwrap_deeply() -> None:
    secret = rpc.wrap_rpc_secret
    got = _round_trip({"s": secret("hunter2"), "n": {"t": secret(["a"])}}, keep_unknowns=False)
    # The SDK hoists a nested secret to the outermost property: all of "n" arrives secret.
    assert is_secret(got["s"]) and is_secret(got["n"])
    assert unwrap_secrets(got) == {"s": "hunter2", "n": {"t": ["a"]}}
    assert contains_unknown(rpc.wrap_rpc_secret(WIRE_UNKNOWN))


def test_unknown_paths_and_changed_see_the_hosts_unknowns_anywhere() -> None:
    got = _round_trip({"a": WIRE_UNKNOWN, "b": {"c": ["x", WIRE_UNKNOWN]}, "d": "known"}, keep_unknowns=True)
    assert unknown_paths(got) == ["a", "b.c[1]"]
    assert changed({"b": {"c": ["x", "y"]}}, got, "b")  # partly unknown: a possible change
    assert not changed({"d": "known"}, got, "d") and changed({"d": "old"}, got, "d")


def test_the_environment_wins_over_a_stored_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_API_TOKEN", raising=False)
    assert credential("SOME_API_TOKEN", " stored ") == "stored"
    assert credential("SOME_API_TOKEN", None) == ""
    monkeypatch.setenv("SOME_API_TOKEN", "rotated")
    assert credential("SOME_API_TOKEN", "stored") == "rotated"
