"""The one settings object. Every knob of Braid lives here, read from ``BRAID_*`` variables."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings", "settings_lines", "settings_table"]


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Braid's configuration; each field is set by the variable ``BRAID_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="BRAID_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis used as broker, result store and job store. Unset: `braid up` "
        "starts an embedded redis-server on 127.0.0.1:BRAID_EMBEDDED_REDIS_PORT.",
    )
    embedded_redis_port: int = Field(
        default=6379, description="The port of the embedded Redis (when BRAID_REDIS_URL is unset)."
    )
    embedded_redis_maxmemory: str = Field(
        default="2gb", description="The most memory the embedded Redis may use (its "
        "`maxmemory`; eviction is off): full, it refuses new jobs with a 503 that says so."
    )
    embedded_redis_password: SecretStr | None = Field(
        default=None, description="The embedded Redis's password. Unset: `braid up` generates "
        "one into the state dir (`redis-password`, readable by its owner only), and every "
        "command that finds it there uses it."
    )
    state_dir: Path = Field(
        default=Path(".braid"), description="Embedded Redis data, the model store, Flower's "
        "password and database, supervisord's config and control socket, a detached system's "
        "logs."
    )
    apps: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["workers"],
        description="Modules (comma-separated) whose services and pipelines Braid serves.",
    )
    models_dir: Path | None = Field(
        default=None, description="The model store; unset: `<state_dir>/models`."
    )

    allow_hub: bool = Field(
        default=False, description="Model names missing from the store are fetched from the "
        "Hugging Face hub (needs network access)."
    )
    max_upload_bytes: int = Field(default=20 * 2**20, description="Larger requests get 413.")
    max_queued: int = Field(
        default=10_000, ge=1, description="While this many messages wait in a service's queue "
        "(a service's `max_queued` overrides it), submissions that need the service get 429 "
        "with `Retry-After`."
    )
    max_json_depth: int = Field(
        default=64, ge=2, description="How deeply a request's JSON (its body, or a multipart "
        "field) may nest arrays and objects; deeper is a 422 before it is parsed."
    )
    max_image_pixels: int = Field(default=4096 * 4096, description="Larger images get 422.")
    image_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"],
        description="Image file formats accepted in requests.",
    )

    api_host: str = Field(default="127.0.0.1", description="The address the API binds to.")
    api_port: int = Field(default=8000, description="The API's port.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="When set (comma-separated), every /v1 route needs `Authorization: Bearer <key>`.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="The key `braid submit` and `braid jobs` send to the API."
    )
    public_url: str | None = Field(
        default=None, description="Base URL used in status links; default derived from the request."
    )

    flower_host: str = Field(default="127.0.0.1", description="The address Flower binds to.")
    flower_port: int = Field(default=5555, description="Flower's port.")
    flower_user: str = Field(default="admin", description="Flower's basic-auth user.")
    flower_password: SecretStr | None = Field(
        default=None,
        description="Flower basic-auth password. Unset: `braid up` generates one in state_dir.",
    )

    blob_threshold: int = Field(
        default=256 * 1024, description="Encoded values larger than this go to Redis by reference."
    )
    max_output_bytes: int = Field(
        default=64 * 2**20, ge=1024, description="A step whose encoded output is larger fails "
        "with `OutputTooLarge` (it would be stored for the job's TTL)."
    )
    job_ttl_s: int = Field(default=7 * 24 * 3600, description="How long jobs and results are kept.")
    max_wait_s: float = Field(default=60.0, description="The longest `?wait=S` the API honours.")
    deadline_slack_s: float = Field(
        default=60.0, description="Added to the sum of step timeouts when deriving a job deadline."
    )
    sweep_interval_s: float = Field(
        default=1.0, description="How often the API fails jobs that passed their deadline."
    )

    visibility_margin_s: float = Field(
        default=60.0,
        description="The broker's visibility timeout is the longest hard time limit plus this.",
    )
    restore_interval_s: float = Field(
        default=5.0,
        description="How often workers look for messages whose worker died (unacked restore).",
    )
    time_limit_grace_s: float = Field(
        default=5.0, description="Hard time limit = service timeout + this grace."
    )
    model_load_timeout_s: float = Field(
        default=180.0, description="How long a pool process may take to import and load its model."
    )
    max_deliveries: int = Field(
        default=3, description="A step whose worker died this many times fails the job."
    )
    heartbeat_s: float = Field(
        default=5.0, description="How often workers say they are alive; one missing three "
        "beats is counted dead."
    )
    torch_threads: int = Field(
        default=1, description="Threads per worker process for torch (OMP_NUM_THREADS)."
    )
    worker_nice: int = Field(
        default=10, ge=0, le=19, description="How far worker processes lower their CPU "
        "priority (a nice increment; the API, Redis and Flower keep theirs): on a shared "
        "host a model's forward pass then never delays the API's and Redis's replies, which "
        "every hop of every job waits for."
    )
    max_concurrency: int | None = Field(
        default=None, description="Caps every service's pool size (small machines, tests)."
    )
    task_events: bool = Field(
        default=False, description="Workers publish Celery task events, so Flower shows "
        "tasks (not only workers, queues and pools); each costs the worker three Redis "
        "publishes per step and Flower their processing. Braid's own job records and events "
        "do not need them."
    )
    batching: bool = Field(
        default=True, description="Workers run up to `max_size` queued calls of a batched API "
        "(`@api(batch=Batch(...))`) in one model call; off, one call at a time (a baseline)."
    )
    stream_window: int = Field(
        default=64, ge=1, description="How many chunks a streaming step may run ahead of the "
        "slowest step that reads its stream; past it, it waits (backpressure)."
    )
    stream_coalesce_ms: float = Field(
        default=10.0, ge=0, description="Chunks yielded less than this far apart are written to "
        "their stream together (one Redis write, not one per token); the first goes at once."
    )
    stream_retention: int = Field(
        default=1024, ge=16, description="How many writes (entries) a stream keeps for readers "
        "that come late or reconnect (older ones are trimmed; the step's output keeps all)."
    )
    otlp_endpoint: str | None = Field(
        default=None, description="An OTLP/HTTP collector (`http://collector:4318`): the API "
        "exports a trace per job there (a span for the submitting request, one per step). "
        "Unset: no traces are made."
    )
    otlp_service_name: str = Field(default="braid", description="The `service.name` of the "
                                   "traces' resource.")
    flower: bool = Field(default=True, description="`braid up` starts Flower.")
    public_docs: bool = Field(
        default=False, description="With `BRAID_API_KEYS` set, `/`, `/docs` and "
        "`/openapi.json` answer without a key too (they hold no data, but name every service, "
        "pipeline and parameter); off, they need a key like `/v1`."
    )
    flower_control: bool = Field(
        default=False, description="Flower may apply, revoke and time-limit tasks and control "
        "workers' pools and queues; off, its task and worker control endpoints answer 403."
    )
    log_json: bool = Field(default=False, description="Every process logs one JSON object a line.")
    log_steps: bool = Field(
        default=False, description="Workers log a line as each step starts and ends (at "
        "DEBUG otherwise): two lines per step, each costing the worker and the supervisor CPU."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    bench: bool = Field(default=False, description="Also serve the no-op bench services.")

    @field_validator("apps", "api_keys", "image_formats", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @property
    def broker_url(self) -> str:
        """The Redis URL every process connects to."""
        if self.redis_url:
            return self.redis_url
        password = self.redis_password()
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def redis_password_file(self) -> Path:
        """Where `braid up` keeps the embedded Redis's generated password."""
        return self.state_dir / "redis-password"

    def redis_password(self) -> str | None:
        """The embedded Redis's password: the setting, else the one generated in the state
        dir (read when asked: `braid up` writes it after its own settings are read)."""
        if self.embedded_redis_password is not None:
            return self.embedded_redis_password.get_secret_value()
        try:
            return self.redis_password_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def shown_broker_url(self) -> str:
        """:attr:`broker_url` with its password hidden, for messages and logs."""
        parts = urlsplit(self.broker_url)
        if parts.password is None:
            return self.broker_url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))

    @property
    def alive_window_s(self) -> float:
        """How long a worker counts as live after its last heartbeat (three beats): after
        that it is dead, and its running steps are handed back."""
        return 3 * self.heartbeat_s

    @property
    def api_url(self) -> str:
        """Where a client on this host reaches the API (loopback for a wildcard address)."""
        return f"http://{_reachable(self.api_host)}:{self.api_port}"

    @property
    def flower_url(self) -> str:
        """Where a browser on this host reaches Flower."""
        return f"http://{_reachable(self.flower_host)}:{self.flower_port}"

    @property
    def model_root(self) -> Path:
        return self.models_dir or self.state_dir / "models"


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(_shown, value))
    return str(value)


def _unset(value: object) -> bool:
    return value is None or value == []


def settings_table() -> str:
    """The ``BRAID_*`` variables as a Markdown table: variable, default, description (the
    README's *Settings* table; ``braid settings --markdown`` prints it)."""
    lines = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if _unset(default) else f"`{_shown(default)}`"
        lines.append(f"| `BRAID_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"


def settings_lines(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """``BRAID_X=value`` for every setting in effect (secrets hidden), marking those that
    ``environ`` sets."""
    lines = []
    for name in Settings.model_fields:
        variable, value = f"BRAID_{name.upper()}", getattr(settings, name)
        shown = "(unset)" if _unset(value) else _shown(value)
        lines.append(f"{variable}={shown}" + ("   # from the environment" if variable in environ
                                               else ""))
    return lines
