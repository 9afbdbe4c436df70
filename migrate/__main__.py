"""Entry point for `python -m migrate`."""

import gc
import sys

# A plan imports ~1,200 provider SDK modules and builds a few hundred thousand objects that live
# until the process exits. With the default thresholds the collector re-walks them hundreds of
# times (about 0.8 s of a 4 s plan, measured); a short-lived command can afford the memory
# (+5 MB for prod at p4-decommission).
gc.set_threshold(100_000, 50, 100)

from migrate.cli import main  # noqa: E402 - the thresholds must apply to these imports too

code = main()
# Everything is garbage now; skip walking it all once more at interpreter shutdown (~1 s).
gc.freeze()
sys.exit(code)
