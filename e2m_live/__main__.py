"""``python -m e2m_live`` runs the ``e2m-live`` command line."""

import sys

from e2m_live.cli import main

sys.exit(main())
