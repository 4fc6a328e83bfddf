"""The api room: thin adapters over the core, and the HTTP server around them.

Adapters parse and format only; every change goes through ``edgetwin.core``. ``server`` runs Hypercorn's
trio worker behind our own accept loop, which enforces the connection set-up deadline (408 and close).
``asgi`` is the front: ``/health`` and the Things API (``things`` over the small ASGI layer in ``http``,
chosen because Quart-Trio costs about a quarter of the throughput per request) are served there; the rest
goes to the Quart-Trio app of ``app_factory``. Errors become Ditto error JSON in one place per layer:
``http.error_response`` for our router, ``render`` for Quart.
"""

from __future__ import annotations
