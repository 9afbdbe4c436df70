"""Old home of the backup verification provider, kept for the pickles in existing stacks' state.

Stacks created before the move to components/migration/backups.py name this module in each
verification resource's `__provider`; see components/lambda_cloud.py for the rule and
tests/test_dynamic_providers.py for the pinned names.
"""

from components.migration.backups import BackupVerificationProvider

__all__ = ["BackupVerificationProvider"]
