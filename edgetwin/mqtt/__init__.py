"""The mqtt room: the embedded broker (issue 7). Today only the listener exists (see ``broker``)."""

from __future__ import annotations
