"""Old home of the Fly.io dynamic providers, kept for the pickles in existing stacks' state.

Pulumi pickles a dynamic provider into each resource's `__provider` by reference, and the provider
host imports that path again for every refresh, diff and destroy. Stacks created before the move
to components/migration/fly.py name this module; see components/lambda_cloud.py for the rule and
tests/test_dynamic_providers.py for the pinned names.
"""

from components.migration.fly import FlyAppExportProvider, FlyAppProvider, FlyDestroyProvider, FlyFreezeProvider

__all__ = ["FlyAppExportProvider", "FlyAppProvider", "FlyDestroyProvider", "FlyFreezeProvider"]
