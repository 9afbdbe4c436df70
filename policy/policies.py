"""Every policy of the gpu-platform pack, exported as POLICIES.

Levels are deliberate: MANDATORY for what guards security or data (a violation blocks
`pulumi up`), ADVISORY for hygiene (reported, not blocking). Each level, and each rule's knobs,
can be overridden per stack in a policy config file (policy/config.<stack>.json, passed to the
CLI as `--policy-pack-config`), validated against the schema on the policy.

Importing this module defines policies only: no server, no network (policy/__main__.py starts
the analyzer when the Pulumi engine runs the pack).
"""

from __future__ import annotations

import project_rules as project
import workload_rules as workload
from policy_support import fail_closed, schema, string_list
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

PACK_NAME = "gpu-platform-policies"
# Each policy sets its own level; this default only applies to a policy that forgets to.
DEFAULT_LEVEL = MANDATORY

_EXEMPT = string_list(
    "Objects this policy skips, as 'namespace/name' (or 'name' when cluster-scoped); the commit that "
    "adds an entry says why",
    [],
)

# --- Kubernetes workloads -----------------------------------------------------------------------------

image_pinned = ResourceValidationPolicy(
    name="k8s-image-pinned",
    description="Container images are pinned to a version tag or digest: never latest, never untagged.",
    validate=fail_closed(workload.check_image_pinned),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "movingTags": string_list(
                "Tags that always move (compared case-insensitively)", workload.DEFAULT_MOVING_TAGS
            ),
            "requireVersionInTag": {
                "type": "boolean",
                "description": "Reject tags with no digit in them (such as 'server-cuda'), which name no version",
                "default": True,
            },
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "supply-chain"],
)

image_digest = ResourceValidationPolicy(
    name="image-digest-pinned",
    description=(
        "Container, Docker and Helm-values images carry a digest next to their tag; a repository on the "
        "reviewed `digestPending` list may run by tag until its digest can be resolved."
    ),
    validate=fail_closed(workload.check_image_digest),
    # Advisory by default (dev); config.prod.json makes it mandatory with its reviewed exceptions.
    enforcement_level=ADVISORY,
    config_schema=schema(
        {
            "digestPending": string_list(
                "Image repositories (no tag; a key ending in '/' covers every repository under it) allowed to "
                "run by tag only, each listed with its reason in components/catalog/versions.py DIGEST_PENDING",
                [],
            ),
        }
    ),
    tags=["kubernetes", "supply-chain"],
)

resources_set = ResourceValidationPolicy(
    name="k8s-resources",
    description="Containers set CPU and memory requests and a memory limit (and a CPU limit where configured).",
    validate=fail_closed(workload.check_resources),
    enforcement_level=ADVISORY,
    config_schema=schema(
        {
            "requireCpuLimit": {"type": "boolean", "description": "Also require limits.cpu", "default": False},
            "cpuLimitExempt": string_list(
                "Objects that need no limits.cpu even with requireCpuLimit, as 'namespace/name'; they still need "
                "every request and the memory limit (policy/README.md says why for each)",
                [],
            ),
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "hygiene"],
)

probes = ResourceValidationPolicy(
    name="k8s-probes",
    description="Long-running containers have a readiness probe and a liveness or startup probe.",
    validate=fail_closed(workload.check_probes),
    enforcement_level=ADVISORY,
    config_schema=schema({"exemptObjects": _EXEMPT}),
    tags=["kubernetes", "hygiene"],
)

run_as_non_root = ResourceValidationPolicy(
    name="k8s-run-as-non-root",
    description="Containers run as a non-root user (runAsNonRoot: true, runAsUser not 0).",
    validate=fail_closed(workload.check_run_as_non_root),
    enforcement_level=MANDATORY,
    config_schema=schema({"exemptObjects": _EXEMPT}),
    tags=["kubernetes", "security"],
)

no_privilege = ResourceValidationPolicy(
    name="k8s-no-privilege",
    description=(
        "Containers are not privileged, set allowPrivilegeEscalation: false and drop ALL capabilities "
        "(the NVIDIA device plugin is on a named allowlist for capabilities)."
    ),
    validate=fail_closed(workload.check_no_privilege),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "allowedCapabilities": string_list("Capabilities a container may add back after dropping ALL", []),
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "security"],
)

no_host_path = ResourceValidationPolicy(
    name="k8s-no-host-path",
    description="No hostPath volumes except the kubelet's device-plugin directory.",
    validate=fail_closed(workload.check_host_path),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "allowedPaths": string_list("Host directories a pod may mount", ["/var/lib/kubelet/device-plugins"]),
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "security"],
)

no_host_namespaces = ResourceValidationPolicy(
    name="k8s-no-host-namespaces",
    description="No hostNetwork, hostPID, hostIPC or hostPort.",
    validate=fail_closed(workload.check_host_namespaces),
    enforcement_level=MANDATORY,
    config_schema=schema({"exemptObjects": _EXEMPT}),
    tags=["kubernetes", "security"],
)

gpu_well_formed = ResourceValidationPolicy(
    name="k8s-gpu-well-formed",
    description=(
        "A pod has an nvidia.com/gpu limit if and only if it uses the nvidia runtime class and tolerates the GPU taint."
    ),
    validate=fail_closed(workload.check_gpu),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "gpuResources": string_list("Extended resource names that are GPUs", workload.DEFAULT_GPU_RESOURCES),
            "runtimeClass": {"type": "string", "description": "RuntimeClass of GPU pods", "default": "nvidia"},
            "gpuTaintKey": {
                "type": "string",
                "description": "Taint key on dedicated GPU nodes",
                "default": "nvidia.com/gpu",
            },
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "gpu"],
)

service_type = ResourceValidationPolicy(
    name="k8s-no-node-port-or-load-balancer",
    description="Services are ClusterIP: no NodePort, LoadBalancer or externalIPs.",
    validate=fail_closed(workload.check_service_type),
    enforcement_level=MANDATORY,
    config_schema=schema({"exemptObjects": _EXEMPT}),
    tags=["kubernetes", "security", "network"],
)

routes_tls = ResourceValidationPolicy(
    name="k8s-routes-tls",
    description="Every Ingress, Traefik IngressRoute, Gateway listener and HTTPRoute serves TLS.",
    validate=fail_closed(workload.check_route_tls),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "allowHttpListeners": {
                "type": "boolean",
                "description": "Allow plain-HTTP Gateway listeners (only for an HTTP-to-HTTPS redirect)",
                "default": False,
            },
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "security", "network"],
)

secret_env = ResourceValidationPolicy(
    name="k8s-secret-env-from-secret-ref",
    description="Env vars named like *KEY*, *TOKEN*, *SECRET*, *PASSWORD* come from valueFrom.secretKeyRef.",
    validate=fail_closed(workload.check_secret_env),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "secretWords": string_list("Name segments that mark a secret env var", workload.DEFAULT_SECRET_WORDS),
            "allowNames": string_list("Env names that match but hold no secret (such as PUBLIC_KEY_URL)", []),
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "security", "secrets"],
)

no_default_namespace = ResourceValidationPolicy(
    name="k8s-no-default-namespace",
    description="Namespaced objects and Helm releases name their own namespace, never 'default'.",
    validate=fail_closed(workload.check_namespace),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "clusterScopedKinds": string_list("Custom kinds that have no namespace", []),
            "exemptObjects": _EXEMPT,
        }
    ),
    tags=["kubernetes", "security"],
)

helm_version = ResourceValidationPolicy(
    name="helm-chart-version-pinned",
    description="Helm releases pin an exact chart version.",
    validate=fail_closed(workload.check_helm_version),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["kubernetes", "supply-chain"],
)

no_ingress_nginx = ResourceValidationPolicy(
    name="no-ingress-nginx",
    description="ingress-nginx is never installed or targeted (chart, image, IngressClass, annotations).",
    validate=fail_closed(workload.check_no_ingress_nginx),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["kubernetes", "security", "house-rule"],
)

# --- this migration -----------------------------------------------------------------------------------

k3s_version = ResourceValidationPolicy(
    name="k3s-version-pinned",
    description="K3s installs pin INSTALL_K3S_VERSION to a release (vX.Y.Z+k3sN) and never use a channel.",
    validate=fail_closed(project.check_k3s_version),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["k3s", "supply-chain"],
)

ssh_host_key = ResourceValidationPolicy(
    name="ssh-host-key-pinned",
    description=(
        "Every remote command and copy connects with a pinned SSH host key, and a Docker provider "
        "over ssh:// makes the system ssh check it."
    ),
    validate=fail_closed(project.check_host_key),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["ssh", "security"],
)

secrets_stay_secret = ResourceValidationPolicy(
    name="secrets-stay-secret",
    description=(
        "The kubeconfig, the K3s join token and API keys stay Pulumi secrets: secret inputs, secret "
        "command output, no logging of it."
    ),
    validate=fail_closed(project.check_secrets),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["security", "secrets"],
)

irreversible_allowed = ResourceValidationPolicy(
    name="irreversible-needs-allow-flag",
    description="An irreversible step (destroying a Fly app, deleting a VM) carries its explicit allow flag.",
    validate=fail_closed(project.check_irreversible_allowed),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {"allowFlags": string_list("Inputs that carry the allow decision", project.DEFAULT_ALLOW_FLAGS)}
    ),
    tags=["data-safety"],
)

stateful_protected = StackValidationPolicy(
    name="stateful-protected-in-prod",
    description=(
        "In prod, stateful resources (databases, StatefulSets, PVCs, model volumes, buckets) set "
        "protect and retain_on_delete."
    ),
    validate=fail_closed(project.check_stateful_protected),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "environment": {
                "type": "string",
                "enum": ["auto", "dev", "prod"],
                "description": (
                    "auto reads the stack's 'environment' output, then the stack name; unknown counts as prod"
                ),
                "default": "auto",
            },
            "statefulTypes": string_list("Resource types that hold data", project.DEFAULT_STATEFUL_TYPES),
            "statefulCharts": string_list("Helm charts that hold data", project.DEFAULT_STATEFUL_CHARTS),
            "statefulDynamicPattern": {
                "type": "string",
                "description": "Regex on a dynamic resource's class name that marks it as holding data",
                "default": project.DEFAULT_STATEFUL_DYNAMIC,
            },
        }
    ),
    tags=["data-safety"],
)

backup_before_destroy = StackValidationPolicy(
    name="destroy-after-verified-backup",
    description=(
        "Every Fly stop or destroy, every restore Job and every other destructive step depends, "
        "transitively, on a backup verification."
    ),
    validate=fail_closed(project.check_backup_before_destroy),
    enforcement_level=MANDATORY,
    config_schema=schema(
        {
            "verificationPattern": {
                "type": "string",
                "description": "Regex on a resource's name or dynamic class that marks a backup verification",
                "default": project.DEFAULT_VERIFICATION_PATTERN,
            },
            "verificationTypes": string_list(
                "Resource types that are a verified backup by construction", project.DEFAULT_VERIFICATION_TYPES
            ),
            "destructiveWords": string_list(
                "Words in a dynamic resource's class or name (CamelCase or dashed) that mark a destructive step",
                project.DEFAULT_DESTRUCTIVE_WORDS,
            ),
        }
    ),
    tags=["data-safety"],
)

secret_stack_outputs = StackValidationPolicy(
    name="secret-stack-outputs",
    description="Stack outputs named like a credential (kubeconfig, *Token, *Key, *Password) are secrets.",
    validate=fail_closed(project.check_secret_stack_outputs),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["security", "secrets"],
)

route_listeners = StackValidationPolicy(
    name="httproute-tls-listener",
    description="An HTTPRoute attaches only to an HTTPS or TLS listener of its Gateway.",
    validate=fail_closed(project.check_route_listeners),
    enforcement_level=MANDATORY,
    config_schema=schema({}),
    tags=["kubernetes", "security", "network"],
)

POLICIES: list[Policy] = [
    image_pinned,
    image_digest,
    resources_set,
    probes,
    run_as_non_root,
    no_privilege,
    no_host_path,
    no_host_namespaces,
    gpu_well_formed,
    service_type,
    routes_tls,
    secret_env,
    no_default_namespace,
    helm_version,
    no_ingress_nginx,
    k3s_version,
    ssh_host_key,
    secrets_stay_secret,
    irreversible_allowed,
    stateful_protected,
    backup_before_destroy,
    secret_stack_outputs,
    route_listeners,
]
