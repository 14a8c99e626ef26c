"""Flower as Braid runs it: read-only unless ``BRAID_FLOWER_CONTROL`` is set.

Flower's API can apply any registered task by name, revoke tasks and shut workers down or
resize their pools (its worker pages' buttons use the same endpoints). Braid's jobs are
submitted and cancelled through its own API, which validates and records them; read-only,
those endpoints answer 403 saying which setting turns them on.
"""

from __future__ import annotations

import re
from typing import Any

from tornado.web import RequestHandler

__all__ = ["CONTROL", "read_only"]

CONTROL = re.compile(r"^/api/(task/(apply|async-apply|send-task|abort|timeout|rate-limit|revoke)"
                     r"|worker/(shutdown|pool|queue))/")
"""The routes of Flower's API that change something."""


class _Refused(RequestHandler):
    def check_xsrf_cookie(self) -> None:
        """Nothing to protect: it refuses every request (tornado checks before prepare)."""

    def prepare(self) -> None:
        self.set_status(403)
        self.finish({"error": "Flower is read-only under Braid: submit and cancel jobs with "
                              "Braid's API, or set BRAID_FLOWER_CONTROL=true to allow Flower to "
                              "control tasks and workers"})


def read_only(handlers: list[Any]) -> None:
    """Route Flower's control endpoints in ``handlers`` (Flower's own list, changed in
    place before Flower starts) to a 403."""
    for i, handler in enumerate(handlers):
        pattern = handler.regex.pattern if hasattr(handler, "regex") else handler[0]
        if CONTROL.match(pattern):
            handlers[i] = (pattern, _Refused)
