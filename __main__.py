"""gpu-platform: load the stack's config, resolve its phase, build what the phase enables, export.

Config is validated as a whole before any resource exists; a mistake stops here with a message
naming the key (see components/config/load.py).
"""

import pulumi

from components import stack
from components.config import load, phases

loaded = load.load()
phase = phases.resolve(loaded.config.phase)
outputs = stack.build(loaded, phase)

for name, value in outputs.items():
    pulumi.export(name, value)
