"""Entry point the Pulumi engine runs (`pulumi preview --policy-pack policy`): serve the pack.

Constructing PolicyPack starts the analyzer's gRPC server and blocks; nothing else belongs here.
The policies themselves live in policies.py so tools and tests can import them without a server.
"""

from policies import DEFAULT_LEVEL, PACK_NAME, POLICIES
from pulumi_policy import PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=DEFAULT_LEVEL, policies=POLICIES)
