"""``python -m skstack``: the command line (see :mod:`skstack.cli`).

Import rule: ``skstack.cli`` only.
"""

from skstack.cli import main

raise SystemExit(main())
