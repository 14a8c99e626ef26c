"""How the reference services batch: up to 16 queued calls in one forward pass, waiting at
most 10 ms for them (none when nothing else is queued)."""

from __future__ import annotations

from app import Batch

BATCH = Batch(max_size=16, max_latency_ms=10)
