"""``python -m microtransformer`` is the same as ``mtx``."""

import sys

from microtransformer.cli.main import main

sys.exit(main())
