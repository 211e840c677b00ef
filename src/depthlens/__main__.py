"""``python -m depthlens``: the same as the ``depthlens`` console script."""

from depthlens.cli.main import main

raise SystemExit(main())
