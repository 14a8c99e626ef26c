"""Issue 12's figures: streaming through Braid against the same model called in-process.

* **Time to first chunk** at an SSE client through two streaming stages (GPT-2 drafting,
  BERT scoring the draft at every token: ``draft-and-score`` with ``every=1``), from the
  submission; against the first token of the same GPT-2 called in this process, plus one
  hop (a one-step no-op job's round trip through Braid, p50).
* **Tokens per second** at an SSE client of a streamed generation (``GPT2.draft``, 128
  tokens: those after the first chunk over the time from the first chunk to the last, the
  rate the text flows at once it began), against the same generation in this process.
* **Redis memory per stream**: ``MEMORY USAGE`` of a finished stream and its state hash,
  per entry, and the bound that ``BRAID_STREAM_RETENTION`` puts on it.

Each figure is the median of ``REPS`` runs, Braid's and in-process runs interleaved. The
in-process model runs with Braid's worker settings (one torch thread).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app._protocol import stream_key, stream_state_key
from bench.systems import Braid
from bench.workloads import NOOP_1

REPS = 15
PROMPT = "I have an idea!"
TOKENS = 128
DRAFT = "/v1/services/gpt2/draft/jobs"
TWO_STAGES = "/v1/pipelines/draft-and-score/jobs"


@dataclass(frozen=True)
class Figures:
    ttfc_s: float
    ttft_s: float
    hop_s: float
    client_tokens_per_s: float
    local_tokens_per_s: float
    stream_bytes: int
    entries: int
    retention: int

    def lines(self) -> list[str]:
        bound = self.ttfc_s / (self.ttft_s + self.hop_s)
        speed = self.client_tokens_per_s / self.local_tokens_per_s
        per_entry = self.stream_bytes / max(1, self.entries)
        return [
            f"streaming: time to first chunk through two stages {self.ttfc_s * 1000:.1f} ms; "
            f"in-process first token {self.ttft_s * 1000:.1f} ms + one hop "
            f"{self.hop_s * 1000:.1f} ms: ratio {bound:.2f} (goal <= 1.2) "
            f"{'MET' if bound <= 1.2 else 'NOT MET'}",
            f"streaming: {TOKENS} tokens at the client {self.client_tokens_per_s:.0f} tokens/s, "
            f"in-process {self.local_tokens_per_s:.0f} tokens/s: ratio {speed:.2f} "
            f"(goal >= 0.9) {'MET' if speed >= 0.9 else 'NOT MET'}",
            f"streaming: Redis memory of one finished {TOKENS}-token stream: "
            f"{self.stream_bytes} bytes in {self.entries} entries ({per_entry:.0f} B/entry); "
            f"bounded by BRAID_STREAM_RETENTION={self.retention} entries: about "
            f"{per_entry * self.retention / 1024:.0f} KiB per stream at most, for the job's TTL",
        ]


def _local_generator() -> Any:
    import torch

    torch.set_num_threads(1)
    from workers.gpt2 import GPT2

    return GPT2()


def _local(model: Any) -> tuple[float, float]:
    """First-token seconds and tokens/s after it, of the generation in this process."""
    started = time.perf_counter()
    first = None
    n = 0
    for _ in model._tokens(PROMPT, TOKENS):
        n += 1
        if first is None:
            first = time.perf_counter() - started
    assert first is not None and n > 1
    return first, (n - 1) / (time.perf_counter() - started - first)


def _first_and_count(http: httpx.Client, url: str, path: str,
                     body: dict[str, Any]) -> tuple[float, float, int, str]:
    """Submit, follow ``/stream``: seconds to the first chunk, to the last, the items after
    the first chunk's, and the job id."""
    started = time.perf_counter()
    job = http.post(f"{url}{path}", json=body).json()["id"]
    first = last = None
    count = 0
    with http.stream("GET", f"{url}/v1/jobs/{job}/stream",
                     timeout=httpx.Timeout(60, read=120)) as r:
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "chunk":
                now = time.perf_counter() - started
                items = len(json.loads(line[6:])["items"])
                if first is None:
                    first, count = now, 0
                else:
                    count += items
                last = now
            elif line.startswith("data: ") and kind == "end":
                state = json.loads(line[6:])["state"]
                if state != "succeeded":
                    raise RuntimeError(f"streamed job {job} {state}")
                break
    if first is None or last is None:
        raise RuntimeError(f"streamed job {job} sent no chunk")
    return first, last, count, job


def _hop(http: httpx.Client, url: str) -> float:
    times = []
    for _ in range(10):
        started = time.perf_counter()
        view = http.post(f"{url}{NOOP_1.path}", params={"wait": 30}, json=NOOP_1.body).json()
        if view.get("state") != "succeeded":
            raise RuntimeError(f"no-op job {view.get('state')}")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(braid: Braid, redis_url: str, retention: int) -> Figures:
    """Issue 12's figures on a running Braid that serves GPT2, BertBaseUncased and
    ``draft-and-score`` (Redis at ``redis_url``, for the memory figure)."""
    import redis

    model = _local_generator()
    _local(model)  # warm
    ttfc, ttft, rate, local_rate = [], [], [], []
    job = ""
    with httpx.Client(timeout=60) as http:
        _first_and_count(http, braid.url, DRAFT, {"prompt": PROMPT, "max_new_tokens": 4})
        hop = _hop(http, braid.url)
        for _ in range(REPS):
            first, _, _, _ = _first_and_count(http, braid.url, TWO_STAGES, {
                "prompt": PROMPT, "max_new_tokens": 8, "every": 1})
            ttfc.append(first)
            first, last, count, job = _first_and_count(http, braid.url, DRAFT, {
                "prompt": PROMPT, "max_new_tokens": TOKENS})
            rate.append(count / (last - first))
            local_first, local_speed = _local(model)
            ttft.append(local_first)
            local_rate.append(local_speed)
    client = redis.Redis.from_url(redis_url)
    key = stream_key(job, "draft")
    size = int(client.memory_usage(key) or 0) + int(
        client.memory_usage(stream_state_key(job, "draft")) or 0)
    return Figures(statistics.median(ttfc), statistics.median(ttft), hop,
                   statistics.median(rate), statistics.median(local_rate), size,
                   int(client.xlen(key)), retention)
