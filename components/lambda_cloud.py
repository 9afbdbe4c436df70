"""Old home of the Lambda Cloud dynamic providers, kept for the pickles in existing stacks' state.

Pulumi pickles a dynamic provider into each resource's `__provider` by reference (module path and
class name) and the provider host imports that path again for every refresh, diff and destroy. A
stack created before the providers moved to components/clouds/lambda_cloud.py names this module;
the program's next `up` rewrites `__provider` with the new path (a no-op update: every provider's
`diff` compares named inputs only). Remove this file only when no stack's state can name it
(tests/test_dynamic_providers.py pins these names).
"""

from components.clouds.lambda_cloud import (
    LambdaFirewallRulesetProvider,
    LambdaFirewallRulesetRulesProvider,
    LambdaInstanceProvider,
    LambdaSshKeyProvider,
)

__all__ = [
    "LambdaFirewallRulesetProvider",
    "LambdaFirewallRulesetRulesProvider",
    "LambdaInstanceProvider",
    "LambdaSshKeyProvider",
]
