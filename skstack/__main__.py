"""``python -m skstack``: the command line (see :mod:`skstack.cli`)."""

from skstack.cli import main

raise SystemExit(main())
