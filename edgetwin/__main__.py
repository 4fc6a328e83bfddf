"""``python -m edgetwin`` is the ``edgetwin`` command."""

from __future__ import annotations

from edgetwin.cli import main

raise SystemExit(main())
