"""Lambda Cloud as Pulumi resources: instances, SSH keys and firewall rulesets (dynamic providers).

Why dynamic providers: there is no Pulumi provider for Lambda Cloud. Each provider here is a thin
state machine over `components.lambda_api.LambdaClient`; the client does pacing, retries and error
decoding.

Secrets. The API key reaches a provider as the secret input `api_key` (the engine keeps it, and the
output of the same name, encrypted in state) and can be overridden by `LAMBDA_API_KEY` at call time.
The provider objects themselves hold no key: Pulumi pickles them into state (`__provider`), so they
carry only timeouts. Instance `user_data` (it holds the SSH host private key) is a secret input
and is never written to outputs; outputs keep its SHA-256 so a change still forces a replacement.

One instance per resource. The instance name is deterministic (project, stack, resource) and a
`gpu-platform-spec` tag digests every input that forces a replacement. Before any launch, and after
any launch whose outcome is unknown (timeout, 5xx), the provider looks for a live instance with that
name and spec and adopts it instead of launching again.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components.catalog.gpus import LAMBDA_INSTANCE_TYPES, LAMBDA_REGIONS
from components.clouds.lambda_api import (
    GONE_STATES,
    INSUFFICIENT_CAPACITY,
    LIVE_STATES,
    NOT_FOUND,
    RULESET_IN_USE,
    Clock,
    FirewallRule,
    Instance,
    LambdaApiError,
    LambdaAuthError,
    LambdaClient,
    LambdaDeadlineError,
    LambdaError,
    Pacer,
    RetryPolicy,
    SystemClock,
    resolve_api_key,
)
from components.core.engine import changed, contains_unknown, is_unknown, known_inputs

TAG_STACK = "gpu-platform-stack"
TAG_RESOURCE = "gpu-platform-resource"
TAG_SPEC = "gpu-platform-spec"

MAX_NAME = 64  # InstanceLaunchRequest.name, AddSSHKeyRequest.name, FirewallRulesetCreateRequest.name
MAX_USER_DATA = 1024 * 1024  # "cannot exceed 1MB"
_TAG_KEY = re.compile(r"^[a-z][a-z0-9-:]+$")


def lambda_name(*parts: str) -> str:
    """A deterministic Lambda-side name from stack and resource, at most 64 characters."""
    name = "-".join(p for p in parts if p)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rules(raw: Any) -> list[FirewallRule]:
    return sorted(
        FirewallRule(
            protocol=r["protocol"],
            source_network=r["source_network"],
            description=r.get("description", ""),
            port_range=(int(r["port_range"][0]), int(r["port_range"][1])) if r.get("port_range") else None,
        )
        for r in raw or ()
    )


def rule_dicts(rules: Sequence[FirewallRule]) -> list[dict[str, Any]]:
    return [r.to_api() for r in sorted(rules)]


class _LambdaProvider(ResourceProvider):
    """What every Lambda provider shares: how to build a client. Holds no secret (it is pickled)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        poll_interval_s: float = 10.0,
        boot_timeout_s: float = 1800.0,
        launch_deadline_s: float = 900.0,
        delete_timeout_s: float = 900.0,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self.boot_timeout_s = boot_timeout_s
        self.launch_deadline_s = launch_deadline_s
        self.delete_timeout_s = delete_timeout_s
        self._pacer: Pacer | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pacer"] = None  # a lock; rebuilt on first use in the provider process
        return state

    def _now(self) -> float:
        return (self.clock or SystemClock()).monotonic()

    def _sleep(self, seconds: float) -> None:
        (self.clock or SystemClock()).sleep(seconds)

    def client(self, props: Mapping[str, Any]) -> LambdaClient:
        key = resolve_api_key(props.get("api_key"))
        if self.clock is None:
            return LambdaClient(key, policy=self.policy)
        if self._pacer is None:
            self._pacer = Pacer(self.clock)
        return LambdaClient(key, clock=self.clock, policy=self.policy, pacer=self._pacer)


# --- instances ---------------------------------------------------------------------------------


def instance_spec(props: Mapping[str, Any]) -> str:
    """Digest of every input whose change forces a new instance (the `gpu-platform-spec` tag)."""
    doc = {
        "hostname": props.get("hostname"),
        "candidates": props.get("candidates"),
        "ssh_key_names": sorted(props.get("ssh_key_names") or ()),
        "user_data": _sha256(props.get("user_data") or ""),
        "image_family": props.get("image_family"),
        "firewall_rulesets": {k: sorted(v) for k, v in sorted((props.get("firewall_rulesets") or {}).items())},
        "tags": props.get("tags") or {},
    }
    return _sha256(json.dumps(doc, sort_keys=True))[:16]


def _check_candidate(i: int, candidate: Any, rulesets: Any) -> list[CheckFailure]:
    """What is wrong with candidate `i` (a {region, instance_type}), as far as it is known."""
    if is_unknown(candidate):
        return []
    if not isinstance(candidate, Mapping):
        return [CheckFailure(f"candidates[{i}]", f"must be a {{region, instance_type}}, got {candidate!r}")]
    failures = []
    region, itype = candidate.get("region"), candidate.get("instance_type")
    if not is_unknown(region) and region not in LAMBDA_REGIONS:
        failures.append(CheckFailure(f"candidates[{i}].region", f"unknown Lambda region {region!r}"))
    if not is_unknown(itype) and itype not in LAMBDA_INSTANCE_TYPES:
        failures.append(CheckFailure(f"candidates[{i}].instance_type", f"unknown instance type {itype!r}"))
    if is_unknown(region) or is_unknown(rulesets):
        return failures
    here = rulesets.get(region) if isinstance(rulesets, Mapping) else None
    if not contains_unknown(here) and not here:
        failures.append(
            CheckFailure(
                "firewall_rulesets",
                f"no firewall ruleset for candidate region {region!r}; an instance there would "
                "launch with only the account-wide rules",
            )
        )
    return failures


class LambdaInstanceProvider(_LambdaProvider):
    """Create, read, diff, update (rename) and delete one Lambda Cloud instance."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        # During a preview any input, or any part of one, may be unknown: check what is known and
        # pass the rest through; create() only ever sees it resolved.
        failures: list[CheckFailure] = []
        name = news.get("name")
        if not is_unknown(name) and (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME):
            failures.append(CheckFailure("name", f"must be 1 to {MAX_NAME} characters, got {name!r}"))
        candidates = news.get("candidates")
        rulesets = news.get("firewall_rulesets") or {}
        if not is_unknown(candidates):
            if not isinstance(candidates, list) or not candidates:
                failures.append(CheckFailure("candidates", "needs at least one {region, instance_type}"))
            else:
                for i, c in enumerate(candidates):
                    failures += _check_candidate(i, c, rulesets)
        keys = news.get("ssh_key_names")
        if not is_unknown(keys) and (not isinstance(keys, list) or len(keys) != 1):
            failures.append(CheckFailure("ssh_key_names", "Lambda needs exactly one SSH key name per launch"))
        tags = news.get("tags") or {}
        if not is_unknown(tags):
            for key, value in tags.items():
                # RequestedTagEntry: key ^[a-z][a-z0-9-:]+$ up to 55 characters, value up to 128.
                if not _TAG_KEY.match(key) or len(key) > 55 or (not is_unknown(value) and len(str(value)) > 128):
                    failures.append(CheckFailure("tags", f"tag {key!r}={value!r} is not a valid Lambda tag"))
        user_data = news.get("user_data")
        if isinstance(user_data, str) and not is_unknown(user_data) and len(user_data.encode()) > MAX_USER_DATA:
            failures.append(CheckFailure("user_data", "cloud-init user data is larger than Lambda's 1 MB limit"))
        return CheckResult(news, failures)

    # --- create ------------------------------------------------------------------------------

    def _find(self, client: LambdaClient, props: Mapping[str, Any], spec: str) -> Instance | None:
        allowed = {(c["region"], c["instance_type"]) for c in props["candidates"]}
        for inst in client.list_instances():
            if inst.name != props["name"] or inst.status not in LIVE_STATES:
                continue
            # Only an instance this resource launched carries its spec tag (set in the launch
            # request itself). One of an older spec is the one a replacement replaces, and an
            # untagged one of the same name was launched by hand: never adopt either.
            if (inst.tags or {}).get(TAG_SPEC) != spec:
                continue
            if (inst.region, inst.instance_type) in allowed:
                return inst
        return None

    def _find_id(self, client: LambdaClient, props: Mapping[str, Any], spec: str) -> str | None:
        found = self._find(client, props, spec)
        return found.id if found is not None else None

    def _launch_body(self, props: Mapping[str, Any], region: str, itype: str, spec: str) -> dict[str, Any]:
        tags = {**(props.get("tags") or {}), TAG_SPEC: spec}
        body: dict[str, Any] = {
            "region_name": region,
            "instance_type_name": itype,
            "ssh_key_names": list(props["ssh_key_names"]),
            "name": props["name"],
            "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())],
            "firewall_rulesets": [{"id": rid} for rid in props["firewall_rulesets"][region]],
        }
        if props.get("hostname"):
            body["hostname"] = props["hostname"]
        if props.get("user_data"):
            body["user_data"] = props["user_data"]
        if props.get("image_family"):
            body["image"] = {"family": props["image_family"]}
        return body

    def _launch(self, client: LambdaClient, props: Mapping[str, Any], spec: str) -> tuple[Instance, list[str]]:
        """Launch on the first candidate with capacity; (instance, what was tried)."""
        tried: list[str] = []
        deadline = self._now() + self.launch_deadline_s
        # create_once looks for this resource's instance before every launch attempt, so an
        # instance left by an earlier, interrupted create is adopted rather than doubled.
        for cand in props["candidates"]:
            region, itype = cand["region"], cand["instance_type"]
            body = self._launch_body(props, region, itype, spec)
            try:
                instance_id = client.create_once(
                    f"launch {props['name']} ({itype} in {region})",
                    find=lambda: self._find_id(client, props, spec),
                    create=functools.partial(client.launch, body, deadline=deadline),
                    deadline=deadline,
                )
            except LambdaApiError as exc:
                if exc.code == INSUFFICIENT_CAPACITY:
                    tried.append(f"{region}/{itype}")
                    continue
                if isinstance(exc, LambdaAuthError):
                    raise  # says itself what to do; no launch context helps
                raise LambdaError(f"launching {props['name']} as {itype} in {region} failed: {exc}") from exc
            inst = client.get_instance(instance_id)
            if inst is None:
                raise LambdaError(f"Lambda launched {instance_id} for {props['name']} but then does not know it")
            return inst, tried
        raise LambdaError(
            f"no Lambda capacity for {props['name']}: tried {', '.join(tried)} (all answered "
            f"{INSUFFICIENT_CAPACITY}); add candidates under hosts[].lambda.candidates or retry later"
        )

    def _wait_active(self, client: LambdaClient, inst: Instance, name: str) -> Instance:
        deadline = self._now() + self.boot_timeout_s
        current: Instance | None = inst
        while True:
            if current is None:
                raise LambdaError(f"instance {inst.id} ({name}) disappeared while booting")
            if current.status == "active" and current.ip:
                return current
            if current.status == "unhealthy":
                raise LambdaError(
                    f"instance {current.id} ({name}) is unhealthy; it was left in place for inspection. "
                    "Terminate it in the Lambda console (or `pulumi destroy` it) before the next `pulumi up`"
                )
            if current.status in GONE_STATES:
                raise LambdaError(
                    f"instance {current.id} ({name}) is {current.status} before it became active; "
                    "the next `pulumi up` launches a new one"
                )
            if self._now() + self.poll_interval_s > deadline:
                raise LambdaDeadlineError(
                    f"instance {current.id} ({name}) is still {current.status} after {self.boot_timeout_s:g}s; "
                    "it was left running and the next `pulumi up` adopts it instead of launching another"
                )
            self._sleep(self.poll_interval_s)
            current = client.get_instance(inst.id)

    def _outs(self, props: Mapping[str, Any], inst: Instance, spec: str, skipped: Sequence[str] = ()) -> dict[str, Any]:
        outs = {k: v for k, v in props.items() if k not in ("user_data", "__provider")}
        outs.update(
            user_data_sha256=_sha256(props.get("user_data") or ""),
            spec=spec,
            instance_id=inst.id,
            region=inst.region,
            instance_type=inst.instance_type,
            ip=inst.ip,
            private_ip=inst.private_ip,
            status=inst.status,
            gpu_description=inst.gpu_description,
            # Candidates that had no capacity when this instance was launched, for the record.
            capacity_skipped=list(skipped),
        )
        return outs

    @known_inputs
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = self.client(props)
        spec = instance_spec(props)
        inst, skipped = self._launch(client, props, spec)
        inst = self._wait_active(client, inst, props["name"])
        return CreateResult(inst.id, self._outs(props, inst, spec, skipped))

    # --- read / diff / update / delete -------------------------------------------------------

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        inst = self.client(props).get_instance(id_)
        if inst is None or inst.status in GONE_STATES:
            # Terminated or preempted: tell the engine it is gone, so `pulumi refresh` drops it and
            # the next `pulumi up` launches a replacement.
            return ReadResult(None, {})
        outs = dict(props)
        outs.update(
            region=inst.region,
            instance_type=inst.instance_type,
            ip=inst.ip,
            private_ip=inst.private_ip,
            status=inst.status,
            name=inst.name,
        )
        return ReadResult(id_, outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces: list[str] = []
        for key in ("hostname", "image_family", "tags"):
            if changed(olds, news, key):
                replaces.append(key)
        # An unknown (preview) is a possible change: it replaces wherever a known change would.
        # Nothing unknown is ever sorted or iterated.
        keys = news.get("ssh_key_names")
        if contains_unknown(keys) or sorted(olds.get("ssh_key_names") or ()) != sorted(keys or ()):
            replaces.append("ssh_key_names")
        user_data = news.get("user_data") or ""
        if contains_unknown(user_data) or _sha256(user_data) != olds.get("user_data_sha256"):
            replaces.append("user_data")
        # Placement: a new candidate list only matters when it no longer allows where we are.
        candidates = news.get("candidates")
        placement = {"region": olds.get("region"), "instance_type": olds.get("instance_type")}
        if contains_unknown(candidates) or placement not in (candidates or []):
            replaces.append("candidates")
        # Rulesets attach at launch only; only the ones for the region we are in matter.
        # A ruleset being created for another region (unknown id in a preview) changes nothing here.
        region = olds.get("region")
        new_sets = news.get("firewall_rulesets")
        here = new_sets.get(region) if isinstance(new_sets, Mapping) else new_sets
        if contains_unknown(here) or sorted(here or ()) != sorted(
            (olds.get("firewall_rulesets") or {}).get(region) or ()
        ):
            replaces.append("firewall_rulesets")
        in_place = [k for k in ("name", "api_key", "candidates", "firewall_rulesets") if changed(olds, news, k)]
        changes = bool(replaces or in_place)
        # Delete before replace: the new instance has the same name (and K3s node name), and
        # create() adopts a live instance of that name and spec, so a create-first replacement
        # with an unchanged spec (`pulumi up --replace`) would adopt the very instance the engine
        # then terminates. The old one goes first; its SSH host key and node go with it.
        return DiffResult(changes=changes, replaces=replaces, stables=[], delete_before_replace=True)

    @known_inputs
    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = self.client(news)
        inst = client.get_instance(id_)
        if inst is None:
            raise LambdaError(f"instance {id_} ({olds.get('name')}) no longer exists; run `pulumi refresh`")
        if news["name"] != inst.name:
            inst = client.rename_instance(id_, news["name"])
        outs = self._outs(news, inst, olds.get("spec") or instance_spec(news), olds.get("capacity_skipped") or ())
        return UpdateResult(outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client(props)
        inst = client.get_instance(id_)
        if inst is None or inst.status in ("terminated", "preempted"):
            return  # already gone is success
        if inst.status != "terminating":
            try:
                client.terminate([id_])
            except LambdaApiError as exc:
                if exc.status != 404 and exc.code != NOT_FOUND:
                    raise
                return
        # Wait until it is gone, so the rulesets and SSH key it uses can be deleted after it.
        deadline = self._now() + self.delete_timeout_s
        while True:
            inst = client.get_instance(id_)
            if inst is None or inst.status in ("terminated", "preempted"):
                return
            if self._now() + self.poll_interval_s > deadline:
                raise LambdaDeadlineError(
                    f"instance {id_} is still {inst.status} {self.delete_timeout_s:g}s after terminate"
                )
            self._sleep(self.poll_interval_s)


# --- SSH keys ----------------------------------------------------------------------------------


class LambdaSshKeyProvider(_LambdaProvider):
    """An SSH public key registered with the Lambda account (instances name it at launch)."""

    @known_inputs
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = self.client(props)
        name, public_key = props["name"], props["public_key"].strip()

        def find() -> str | None:
            for key in client.list_ssh_keys():
                if key.name == name:
                    if key.public_key.split()[:2] != public_key.split()[:2]:
                        raise LambdaError(
                            f"the Lambda account already has an SSH key named {name!r} with another public key; "
                            "delete it in the Lambda console or import it"
                        )
                    return key.id
            return None

        key_id = client.create_once(
            f"add SSH key {name}",
            find=find,
            create=lambda: client.add_ssh_key(name, public_key).id,
            deadline=self._now() + self.launch_deadline_s,
        )
        return CreateResult(key_id, {**{k: v for k, v in props.items() if k != "__provider"}, "key_id": key_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        for key in self.client(props).list_ssh_keys():
            if key.id == id_:
                return ReadResult(id_, {**props, "name": key.name, "public_key": key.public_key})
        return ReadResult(None, {})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("name", "public_key") if changed(olds, news, k)]
        changes = bool(replaces) or changed(olds, news, "api_key")
        # Delete before replace: the new instance has the same name (and K3s node name), and
        # create() adopts a live instance of that name and spec, so a create-first replacement
        # with an unchanged spec (`pulumi up --replace`) would adopt the very instance the engine
        # then terminates. The old one goes first; its SSH host key and node go with it.
        return DiffResult(changes=changes, replaces=replaces, stables=[], delete_before_replace=True)

    @known_inputs
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**{k: v for k, v in news.items() if k != "__provider"}, "key_id": _id})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client(props)
        if not any(key.id == id_ for key in client.list_ssh_keys()):
            return
        try:
            client.delete_ssh_key(id_)
        except LambdaApiError as exc:
            if exc.status != 404 and exc.code != NOT_FOUND:
                raise


# --- firewall rulesets -------------------------------------------------------------------------


class LambdaFirewallRulesetProvider(_LambdaProvider):
    """A firewall ruleset (never the account-wide `PUT /firewall-rules`).

    `rules` None means "rules are owned by a LambdaFirewallRulesetRules resource": the ruleset is
    created empty and this provider never touches its rules afterwards.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not is_unknown(news.get("region")) and news.get("region") not in LAMBDA_REGIONS:
            failures.append(CheckFailure("region", f"unknown Lambda region {news.get('region')!r}"))
        failures += _check_rules(news.get("rules"))
        return CheckResult(news, failures)

    @known_inputs
    def create(self, props: dict[str, Any]) -> CreateResult:
        client = self.client(props)
        name, region = props["name"], props["region"]
        managed = props.get("rules") is not None
        rules = _rules(props.get("rules"))

        def find() -> str | None:
            for rs in client.list_firewall_rulesets():
                if rs.name == name and rs.region == region:
                    if managed and sorted(rs.rules) != rules:
                        client.update_firewall_ruleset(rs.id, rules=rules)
                    return rs.id
            return None

        rid = client.create_once(
            f"create firewall ruleset {name}",
            find=find,
            create=lambda: client.create_firewall_ruleset(name, region, rules).id,
            deadline=self._now() + self.launch_deadline_s,
        )
        return CreateResult(rid, {**{k: v for k, v in props.items() if k != "__provider"}, "ruleset_id": rid})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        rs = self.client(props).get_firewall_ruleset(id_)
        if rs is None:
            return ReadResult(None, {})
        outs = {**props, "name": rs.name, "region": rs.region}
        if props.get("rules") is not None:
            outs["rules"] = rule_dicts(rs.rules)
        return ReadResult(id_, outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["region"] if changed(olds, news, "region") else []
        if (olds.get("rules") is None) != (news.get("rules") is None):
            replaces.append("rules")  # who owns the rules changed
        rules_changed = news.get("rules") is not None and (
            contains_unknown(news.get("rules")) or _rules(olds.get("rules")) != _rules(news.get("rules"))
        )
        changes = bool(replaces) or rules_changed or any(changed(olds, news, k) for k in ("name", "api_key"))
        # Delete before replace: the new instance has the same name (and K3s node name), and
        # create() adopts a live instance of that name and spec, so a create-first replacement
        # with an unchanged spec (`pulumi up --replace`) would adopt the very instance the engine
        # then terminates. The old one goes first; its SSH host key and node go with it.
        return DiffResult(changes=changes, replaces=replaces, stables=[], delete_before_replace=True)

    @known_inputs
    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = self.client(news)
        rules = _rules(news["rules"]) if news.get("rules") is not None else None
        if rules is not None or news["name"] != olds.get("name"):
            client.update_firewall_ruleset(id_, name=news["name"], rules=rules)
        return UpdateResult({**{k: v for k, v in news.items() if k != "__provider"}, "ruleset_id": id_})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client(props)
        deadline = self._now() + self.delete_timeout_s
        while True:
            try:
                client.delete_firewall_ruleset(id_)
                return
            except LambdaApiError as exc:
                if exc.status == 404 or exc.code == NOT_FOUND:
                    return  # already gone is success
                if exc.code != RULESET_IN_USE:
                    raise
                # Instances it was attached to are still terminating; they let go within minutes.
                if self._now() + self.poll_interval_s > deadline:
                    raise LambdaDeadlineError(
                        f"firewall ruleset {id_} ({props.get('name')}) is still attached to instances "
                        f"{self.delete_timeout_s:g}s later; terminate them first"
                    ) from exc
                self._sleep(self.poll_interval_s)


class LambdaFirewallRulesetRulesProvider(_LambdaProvider):
    """Owns the rules of a ruleset created with `rules=None` (cluster peers known only after launch)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check_rules(news.get("rules")))

    @known_inputs
    def create(self, props: dict[str, Any]) -> CreateResult:
        rid = props["ruleset_id"]
        self.client(props).update_firewall_ruleset(rid, rules=_rules(props["rules"]))
        return CreateResult(f"{rid}-rules", {k: v for k, v in props.items() if k != "__provider"})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        rs = self.client(props).get_firewall_ruleset(props["ruleset_id"])
        if rs is None:
            return ReadResult(None, {})
        return ReadResult(id_, {**props, "rules": rule_dicts(rs.rules)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["ruleset_id"] if changed(olds, news, "ruleset_id") else []
        rules_changed = contains_unknown(news.get("rules")) or _rules(olds.get("rules")) != _rules(news.get("rules"))
        changes = bool(replaces) or rules_changed or changed(olds, news, "api_key")
        # Delete before replace: the new instance has the same name (and K3s node name), and
        # create() adopts a live instance of that name and spec, so a create-first replacement
        # with an unchanged spec (`pulumi up --replace`) would adopt the very instance the engine
        # then terminates. The old one goes first; its SSH host key and node go with it.
        return DiffResult(changes=changes, replaces=replaces, stables=[], delete_before_replace=True)

    @known_inputs
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self.client(news).update_firewall_ruleset(news["ruleset_id"], rules=_rules(news["rules"]))
        return UpdateResult({k: v for k, v in news.items() if k != "__provider"})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        try:
            self.client(props).update_firewall_ruleset(props["ruleset_id"], rules=[])
        except LambdaApiError as exc:
            if exc.status != 404 and exc.code != NOT_FOUND:
                raise


def _check_rules(raw: Any) -> list[CheckFailure]:
    """What is wrong with a rules list, as far as it is known (peers' addresses may not be yet)."""
    if raw is None or is_unknown(raw):
        return []
    if not isinstance(raw, list):
        return [CheckFailure("rules", f"must be a list of rules, got {raw!r}")]
    failures = []
    for i, r in enumerate(raw):
        where = f"rules[{i}]"
        if is_unknown(r):
            continue
        proto, ports = r.get("protocol"), r.get("port_range")
        if not is_unknown(proto):
            if proto not in ("tcp", "udp", "icmp", "all"):
                failures.append(CheckFailure(where, f"protocol must be tcp, udp, icmp or all, got {proto!r}"))
            if not is_unknown(ports):
                if proto in ("tcp", "udp") and not ports:
                    failures.append(CheckFailure(where, f"{proto} rules need port_range"))
                if proto in ("icmp", "all") and ports:
                    failures.append(CheckFailure(where, f"{proto} rules take no port_range"))
        source = r.get("source_network", "")
        if not is_unknown(source):
            try:
                net = ipaddress.ip_network(source, strict=True)
            except ValueError:
                failures.append(CheckFailure(where, f"source_network {source!r} is not an IPv4 CIDR"))
            else:
                if net.version != 4:
                    failures.append(CheckFailure(where, f"Lambda rules take IPv4 networks only, got {source!r}"))
    return failures


# --- resources ---------------------------------------------------------------------------------


class LambdaSshKey(pulumi.dynamic.Resource, module="lambda_cloud", name="LambdaSshKey"):
    key_id: pulumi.Output[str]
    name: pulumi.Output[str]
    public_key: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        public_key: pulumi.Input[str],
        api_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
        provider: LambdaSshKeyProvider | None = None,
    ) -> None:
        props = {"name": name, "public_key": public_key, "api_key": pulumi.Output.secret(api_key), "key_id": None}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["api_key"]))
        super().__init__(provider or LambdaSshKeyProvider(), resource_name, props, opts)


class LambdaFirewallRuleset(pulumi.dynamic.Resource, module="lambda_cloud", name="LambdaFirewallRuleset"):
    ruleset_id: pulumi.Output[str]
    name: pulumi.Output[str]
    region: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: pulumi.Input[str],
        region: str,
        rules: Sequence[FirewallRule] | None,
        api_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
        provider: LambdaFirewallRulesetProvider | None = None,
    ) -> None:
        props = {
            "name": name,
            "region": region,
            "rules": None if rules is None else rule_dicts(rules),
            "api_key": pulumi.Output.secret(api_key),
            "ruleset_id": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["api_key"]))
        super().__init__(provider or LambdaFirewallRulesetProvider(), resource_name, props, opts)


class LambdaFirewallRulesetRules(pulumi.dynamic.Resource, module="lambda_cloud", name="LambdaFirewallRulesetRules"):
    def __init__(
        self,
        resource_name: str,
        *,
        ruleset_id: pulumi.Input[str],
        rules: pulumi.Input[Sequence[Mapping[str, Any]]],
        api_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
        provider: LambdaFirewallRulesetRulesProvider | None = None,
    ) -> None:
        props = {"ruleset_id": ruleset_id, "rules": rules, "api_key": pulumi.Output.secret(api_key)}
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["api_key"]))
        super().__init__(provider or LambdaFirewallRulesetRulesProvider(), resource_name, props, opts)


class LambdaInstance(pulumi.dynamic.Resource, module="lambda_cloud", name="LambdaInstance"):
    """One Lambda Cloud instance, launched on the first (region, type) candidate with capacity."""

    instance_id: pulumi.Output[str]
    region: pulumi.Output[str]
    instance_type: pulumi.Output[str]
    ip: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    status: pulumi.Output[str]
    gpu_description: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        name: str,
        hostname: str,
        candidates: Sequence[Mapping[str, str]],
        ssh_key_names: pulumi.Input[Sequence[pulumi.Input[str]]],
        firewall_rulesets: Mapping[str, Sequence[pulumi.Input[str]]],
        user_data: pulumi.Input[str],
        api_key: pulumi.Input[str],
        tags: Mapping[str, str],
        image_family: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
        provider: LambdaInstanceProvider | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "name": name,
            "hostname": hostname,
            "candidates": [dict(c) for c in candidates],
            "ssh_key_names": ssh_key_names,
            "firewall_rulesets": {region: list(ids) for region, ids in firewall_rulesets.items()},
            "user_data": pulumi.Output.secret(user_data),
            "api_key": pulumi.Output.secret(api_key),
            "tags": dict(tags),
            "image_family": image_family,
            # Outputs the provider fills in; declared so they resolve as attributes.
            "instance_id": None,
            "region": None,
            "instance_type": None,
            "ip": None,
            "private_ip": None,
            "status": None,
            "gpu_description": None,
            "user_data_sha256": None,
            "spec": None,
            "capacity_skipped": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                additional_secret_outputs=["api_key", "user_data"],
                # Also for replacements the engine starts without asking diff (`--replace`):
                # see LambdaInstanceProvider.diff.
                delete_before_replace=True,
            ),
        )
        super().__init__(provider or LambdaInstanceProvider(), resource_name, props, opts)
