"""``python -m tvts_train.eval retrieval ...`` = ``tvts-train eval retrieval ...``."""

import sys

from tvts_train.cli import main

raise SystemExit(main(["eval", *sys.argv[1:]]))
