"""``python -m actlab``: the ``actlab`` command line, as ``python -m actlab.cli``."""

import sys

from actlab.cli import main

sys.exit(main())
