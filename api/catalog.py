"""What is served: the bodies of ``/v1/pipelines`` and ``/v1/services``, one model per item."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app._pipeline import Pipeline
from app._queues import QueueStats
from app._service import ServiceSpec

__all__ = ["PipelineInfo", "PipelineList", "ServiceInfo", "ServiceList", "pipeline_info",
           "service_info"]


class GraphNode(BaseModel):
    """One step of a pipeline's graph."""

    name: str = Field(description="The step's name, as `steps` of a job names it")
    service: str
    api: str
    queue: str = Field(description="The queue its messages go to")
    kind: Literal["step", "map"] = Field(description="`map` for a step run once per element "
                                         "of a list (`each`)")
    streams: bool = Field(description="Whether its API yields (its chunks can be followed at "
                          "`/v1/jobs/{id}/stream`)")


class Graph(BaseModel):
    """A pipeline's steps and which step's output each one takes."""

    nodes: list[GraphNode]
    edges: list[tuple[str, str]] = Field(description="`[from, to]`: `to` takes `from`'s output")
    streams: list[tuple[str, str]] = Field(description="`[from, to]`: `to` reads the chunks "
                                           "`from` yields, as they come (both run at once)")


class PipelineInfo(BaseModel):
    """A declared pipeline: what it takes, its steps, and where to submit it."""

    model_config = ConfigDict(extra="allow")

    name: str
    input_schema: dict[str, Any] = Field(description="JSON Schema of the job's body")
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the job's result, where it is known")
    graph: Graph
    submit_url: str = Field(description="`POST` a body here to run the pipeline as a job")


class PipelineList(BaseModel):
    """Every pipeline this API serves."""

    pipelines: list[PipelineInfo]


class BatchInfo(BaseModel):
    """A batched API's settings: a worker runs up to `max_size` queued calls in one model
    call, waiting at most `max_latency_ms` for more (none when nothing else is queued)."""

    max_size: int
    max_latency_ms: float


class ApiInfo(BaseModel):
    """One typed API of a service, runnable as a one-step job."""

    name: str
    task: str = Field(description="The Celery task name, `<service>.<api>`")
    submit_url: str = Field(description="`POST` a body here to run the API as a job")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the job's body")
    output_schema: dict[str, Any] = Field(description="JSON Schema of the job's result")
    batch: BatchInfo | None = Field(description="How a worker batches queued calls of it "
                                    "(`null`: one call at a time)")
    inline: bool = Field(description="Whether a pipeline step of it runs in the worker that "
                         "finished its inputs (light glue), not through its queue")
    streams: bool = Field(description="Whether it yields: its steps' chunks can be followed "
                          "at `/v1/jobs/{id}/stream` as they come")


class ResourcesInfo(BaseModel):
    """What one worker of the service needs."""

    cpu: int = Field(description="Pool size (processes), unless `concurrency` says otherwise")
    gpu: int
    memory: str | None = Field(description="The per-process memory guard (`2Gi`)")


class ProcessInfo(BaseModel):
    """One live worker process of a service."""

    model_config = ConfigDict(extra="allow")

    process: str = Field(description="`host:pid`")
    node: str = Field(description="Its worker's node name (as Flower shows it)")
    device: str = Field(description="Where its model runs (`cpu`, `cuda:0`)")
    models: list[str] = Field(description="The model store versions it loaded (`gpt2:v1`)")
    since: float = Field(description="When it started (epoch seconds)")


class ServiceInfo(BaseModel):
    """A service: its declaration, its queue right now, and its APIs."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str
    class_: str = Field(alias="class", description="The declaring class, `module.Class`")
    queue: str
    resources: ResourcesInfo
    timeout: float = Field(description="The soft time limit of a step, in seconds")
    concurrency: int = Field(description="Processes per worker")
    models: list[str] = Field(description="The model store tags its workers load")
    waiting: int = Field(description="Messages in its queue")
    reserved: int = Field(description="Messages a worker holds and has not acked")
    depth: int = Field(description="`waiting + reserved`: the work not finished (the "
                       "autoscaling signal)")
    live_workers: int = Field(description="Worker processes that loaded the model and keep "
                              "sending heartbeats")
    processes: list[ProcessInfo] = Field(description="Those processes: where they run and "
                                         "what they loaded")
    apis: list[ApiInfo]


class ServiceList(BaseModel):
    """Every service a deployment of this API runs, the built-in `braid` first."""

    services: list[ServiceInfo]


def pipeline_info(pipeline: Pipeline) -> dict[str, Any]:
    """The JSON of a pipeline's :class:`PipelineInfo`."""
    return {**pipeline.describe(), "submit_url": f"/v1/pipelines/{pipeline.name}/jobs"}


def service_info(service: ServiceSpec, stats: QueueStats,
                 processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of a service's :class:`ServiceInfo`."""
    return {**service.describe(), **stats.describe(), "processes": processes, "apis": [
        {"name": a.name, "task": a.task_name,
         "submit_url": f"/v1/services/{service.name}/{a.name}/jobs",
         "input_schema": a.input_model.model_json_schema(),
         "output_schema": a.output_schema(),
         "batch": asdict(a.batch) if a.batch else None, "inline": a.inline,
         "streams": a.streams}
        for a in service.apis.values()]}
