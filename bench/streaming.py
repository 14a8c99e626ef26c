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
    ttfc_two_requests_s: float
    ttft_s: float
    two_stages_s: float
    hop_s: float
    end_s: float
    client_tokens_per_s: float
    local_tokens_per_s: float
    stream_bytes: int
    entries: int
    retention: int

    def lines(self) -> list[str]:
        bound = self.ttfc_s / (self.ttft_s + self.hop_s)
        speed = self.client_tokens_per_s / self.local_tokens_per_s
        per_entry = self.stream_bytes / max(1, self.entries)
        floor = self.two_stages_s + self.hop_s
        return [
            f"streaming: time to first chunk through two stages {self.ttfc_s * 1000:.1f} ms "
            f"(one request; {self.ttfc_two_requests_s * 1000:.1f} ms submitted then followed); "
            f"in-process first token {self.ttft_s * 1000:.1f} ms + one hop "
            f"{self.hop_s * 1000:.1f} ms: ratio {bound:.2f} (goal <= 1.2) "
            f"{'MET' if bound <= 1.2 else 'NOT MET'}",
            f"streaming: the floor, both stages in process (first token, then its score) "
            f"{self.two_stages_s * 1000:.1f} ms + one hop: {floor / (self.ttft_s + self.hop_s):.2f}"
            f" of the goal's base; Braid's first chunk {self.ttfc_s / floor:.2f}x the floor",
            f"streaming: the job's end reached the client {self.end_s * 1000:.1f} ms after "
            f"its last chunk",
            f"streaming: {TOKENS} tokens at the client {self.client_tokens_per_s:.0f} tokens/s, "
            f"in-process {self.local_tokens_per_s:.0f} tokens/s: ratio {speed:.2f} "
            f"(goal >= 0.9) {'MET' if speed >= 0.9 else 'NOT MET'}",
            f"streaming: Redis memory of one finished {TOKENS}-token stream: "
            f"{self.stream_bytes} bytes in {self.entries} entries ({per_entry:.0f} B/entry); "
            f"bounded by BRAID_STREAM_RETENTION={self.retention} entries: about "
            f"{per_entry * self.retention / 1024:.0f} KiB per stream at most, for the job's TTL",
        ]


def _local_models() -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    from workers.bert_base_uncased import BertBaseUncased
    from workers.gpt2 import GPT2

    return GPT2(), BertBaseUncased()


def _local_two_stages(generator: Any, scorer: Any) -> float:
    """Seconds to the first score of the two stages, called in this process."""
    started = time.perf_counter()
    next(scorer.score_draft(generator.draft(PROMPT, 8), every=1))
    return time.perf_counter() - started


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


@dataclass(frozen=True)
class _Streamed:
    first_s: float
    last_s: float
    end_s: float
    count: int
    """Items after the first chunk's."""
    job: str


def _streamed(http: httpx.Client, url: str, path: str, body: dict[str, Any],
              one_request: bool = True) -> _Streamed:
    """Submit and follow the job's chunks, in one request (``POST`` with ``Accept:
    text/event-stream``) or two (then ``GET /stream``); seconds from the submission."""
    started = time.perf_counter()
    sse = {"Accept": "text/event-stream"}
    timeout = httpx.Timeout(60, read=120)
    job = ""
    if one_request:
        method, target, extra = "POST", f"{url}{path}", dict[str, Any](json=body, headers=sse)
    else:
        job = http.post(f"{url}{path}", json=body).json()["id"]
        method, target, extra = "GET", f"{url}/v1/jobs/{job}/stream", dict[str, Any]()
    first = last = None
    count = 0
    with http.stream(method, target, timeout=timeout, **extra) as r:
        job = r.headers["location"].rsplit("/", 1)[-1] if one_request else job
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
    ended = time.perf_counter() - started
    if first is None or last is None:
        raise RuntimeError(f"streamed job {job} sent no chunk")
    return _Streamed(first, last, ended, count, job)


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

    model, scorer = _local_models()
    _local(model)  # warm
    _local_two_stages(model, scorer)
    ttfc, ttfc_two, ends, ttft, two_stages, rate, local_rate = [], [], [], [], [], [], []
    job = ""
    two = {"prompt": PROMPT, "max_new_tokens": 8, "every": 1}
    with httpx.Client(timeout=60) as http:
        _streamed(http, braid.url, DRAFT, {"prompt": PROMPT, "max_new_tokens": 4})
        hop = _hop(http, braid.url)
        for _ in range(REPS):
            found = _streamed(http, braid.url, TWO_STAGES, two)
            ttfc.append(found.first_s)
            ends.append(found.end_s - found.last_s)
            ttfc_two.append(_streamed(http, braid.url, TWO_STAGES, two, False).first_s)
            found = _streamed(http, braid.url, DRAFT, {"prompt": PROMPT,
                                                        "max_new_tokens": TOKENS})
            rate.append(found.count / (found.last_s - found.first_s))
            job = found.job
            local_first, local_speed = _local(model)
            ttft.append(local_first)
            local_rate.append(local_speed)
            two_stages.append(_local_two_stages(model, scorer))
    client = redis.Redis.from_url(redis_url)
    key = stream_key(job, "draft")
    size = int(client.memory_usage(key) or 0) + int(
        client.memory_usage(stream_state_key(job, "draft")) or 0)
    m = statistics.median
    return Figures(m(ttfc), m(ttfc_two), m(ttft), m(two_stages), hop, m(ends), m(rate),
                   m(local_rate), size, int(client.xlen(key)), retention)
