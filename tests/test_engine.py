"""components/engine.py recognises values in the forms the SDK's own serializers produce."""

from __future__ import annotations

import asyncio

from google.protobuf import struct_pb2
from pulumi.output import Unknown
from pulumi.runtime import rpc

from components.engine import WIRE_UNKNOWN, contains_unknown, is_secret, is_unknown, unwrap_secrets


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
