"""The api room: thin Quart-Trio adapters over the core, and the HTTP server around them.

Adapters parse and format only; every change goes through ``edgetwin.core``. Errors are mapped to
Ditto error JSON in exactly one place, ``render``. ``server`` runs Hypercorn's trio worker behind our own
accept loop, which enforces the connection set-up deadline (408 and close).
"""

from __future__ import annotations
