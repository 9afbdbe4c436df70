"""The two bases every model shares: `Frozen` for config (camelCase in YAML) and `Args` for components."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


def camel(name: str) -> str:
    """snake_case to the camelCase Pulumi config uses: `k3s_version` -> `k3sVersion`.

    pydantic's own `to_camel` upper-cases a letter after a digit (`k3SVersion`), which is not
    how anyone would type the key.
    """
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Frozen(BaseModel):
    """Immutable, rejects unknown keys (a typo is an error, not a silent default), camelCase aliases."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=camel,
        populate_by_name=True,
        arbitrary_types_allowed=True,
    )


class Args(BaseModel):
    """The base of every component's Args (and the settings groups inside them).

    Frozen and strict like `Frozen`, but without camelCase aliases: Args are built in Python by
    components/stack.py, never read from YAML. Handles, Outputs and resources are fields typed
    `InstanceOf[...]` (or an `Output` type), which pydantic checks by type and leaves untouched;
    everything else is validated before the component creates its first child.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
