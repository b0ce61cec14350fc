"""``python -m actlab.cli``: the ``actlab`` command line."""

import sys

from actlab.cli import main

sys.exit(main())
