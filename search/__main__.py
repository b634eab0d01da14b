"""``python -m search`` is the ``memfront`` command."""

from __future__ import annotations

import sys

from search.cli._app import main

sys.exit(main())
