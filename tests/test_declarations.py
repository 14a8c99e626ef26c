"""Declaring services and pipelines: what is accepted, and the errors that name the fix."""

from __future__ import annotations

from typing import Any

import pytest

from app import DeclarationError, Resources, Value, api, each, pipeline, service, step
from app._pipeline import compatible
from app._runtime import select_device
from app._service import kebab
from tests.apps.basic import Echo
from tests.apps.calc import Calc


def test_service_gets_kebab_queue_and_task_names() -> None:
    spec = Echo.__braid_service__  # type: ignore[attr-defined]
    assert (spec.name, spec.queue) == ("echo", "echo")
    assert spec.apis["echo"].task_name == "echo.echo"
    assert [kebab(n) for n in ("TextModel", "GPT2", "BertBaseUncased", "DistilGPT2")] == [
        "text-model", "gpt2", "bert-base-uncased", "distil-gpt2"]


@pytest.mark.parametrize("kwargs, message", [
    ({"cpu": 0}, "cpu must be an int >= 1"),
    ({"gpu": -1}, "gpu must be an int >= 0"),
    ({"memory": "2 gigs"}, "write memory like '512Mi'"),
])
def test_bad_resources_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        Resources(**kwargs)


def test_api_without_type_hints_is_refused() -> None:
    with pytest.raises(DeclarationError, match="parameter 'x' needs a type hint"):
        @service(name="untyped")
        class Untyped:
            @api
            def f(self, x) -> int:  # type: ignore[no-untyped-def]
                return 1


def test_service_without_apis_is_refused() -> None:
    with pytest.raises(DeclarationError, match="mark at least one method @api"):
        @service(name="empty")
        class Empty:
            def f(self) -> int:
                return 1


def test_pipeline_connecting_mismatched_types_names_both_ends() -> None:
    with pytest.raises(DeclarationError) as caught:
        @pipeline(name="mismatch")
        def mismatch(n: int) -> Value[int]:
            return step(Calc.double, step(Calc.span, n))
    message = str(caught.value)
    assert "step 'calc.span' gives list[int]" in message
    assert "step 'calc.double' (calc.double) takes x: int" in message


def test_pipeline_referencing_unknown_api_is_refused() -> None:
    def not_an_api(x: int) -> int:
        return x

    with pytest.raises(DeclarationError, match="is not a Braid service API"):
        @pipeline(name="unknown-api")
        def unknown(x: int) -> Value[int]:
            return step(not_an_api, x)


def test_map_over_a_non_list_is_refused() -> None:
    with pytest.raises(DeclarationError, match="each\\(\\) maps over a list"):
        @pipeline(name="map-int")
        def map_int(x: int) -> Value[list[int]]:
            return each(Calc.double, step(Calc.double, x))


def test_missing_required_argument_is_refused() -> None:
    with pytest.raises(DeclarationError, match="needs 'b'"):
        @pipeline(name="missing-arg")
        def missing(x: int) -> Value[int]:
            return step(Calc.add, x)


def test_graph_that_is_not_series_parallel_is_refused() -> None:
    with pytest.raises(DeclarationError, match="not series-parallel") as caught:
        @pipeline(name="n-shape")
        def n_shape(x: int) -> list[Value[int]]:
            a = step(Calc.double, x).named("a")
            b = step(Calc.double, x).named("b")
            c = step(Calc.double, a).named("c")
            d = step(Calc.add, a, b).named("d")
            return [step(Calc.add, c, d).named("e"), step(Calc.double, b).named("f")]
    assert "Celery canvas cannot express this" in str(caught.value)


def test_series_parallel_graph_decomposes_into_canvas_shapes() -> None:
    @pipeline(name="diamond")
    def diamond(x: int) -> Value[int]:
        a = step(Calc.double, x).named("a")
        return step(Calc.add, step(Calc.double, a).named("b"),
                    step(Calc.double, a).named("c")).named("d")

    spec = diamond.__braid_pipeline__  # type: ignore[attr-defined]
    assert str(spec.tree) == "Series(parts=('a', Parallel(parts=('b', 'c')), 'd'))"
    assert spec.sinks == ["d"]


def test_type_compatibility() -> None:
    assert compatible(int, float)
    assert compatible(list[int], list[float])
    assert compatible(Any, list[str])
    assert compatible(list[str], list[Any])
    assert not compatible(list[int], int)
    assert not compatible(str, int)
    assert compatible(int | None, int | None)
    assert not compatible(int | None, int)


def test_gpu_placement_spreads_processes_over_devices() -> None:
    # No GPU exists here, so the device count is passed in as a stand-in for CUDA's.
    assert select_device(gpu=1, process_index=0, cuda_devices=0) == "cpu"
    assert select_device(gpu=0, process_index=0, cuda_devices=2) == "cpu"
    assert [select_device(1, i, 2) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]


def test_a_batched_api_is_the_single_call_to_callers() -> None:
    from tests.apps.batching import Batcher

    spec = Batcher.__braid_service__.apis["hold"]  # type: ignore[attr-defined]
    assert [(p.name, p.annotation) for p in spec.params] == [("seconds", float), ("key", str)]
    assert spec.output is float and spec.batch is not None
    assert spec.input_model.model_json_schema()["properties"]["seconds"]["type"] == "number"


@pytest.mark.parametrize("source, message", [
    ("def f(self, x: int) -> list[int]: ...", "takes its calls' inputs as a list in its first"),
    ("def f(self, xs: list[int] = []) -> list[int]: ...", "without a default"),
    ("def f(self, xs: list[int]) -> int: ...", "returns a list, one output per input"),
])
def test_a_batched_api_whose_signature_does_not_fit_is_refused(source: str,
                                                               message: str) -> None:
    from app import Batch

    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(DeclarationError, match=message):
        service(name="misfit")(type("Misfit", (), {"f": api(batch=Batch())(namespace["f"])}))


@pytest.mark.parametrize("kwargs, message", [
    ({"max_size": 0}, "max_size=0\\) must be an int >= 1"),
    ({"max_latency_ms": -1}, "max_latency_ms=-1\\) must be >= 0"),
])
def test_bad_batch_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    from app import Batch

    with pytest.raises(DeclarationError, match=message):
        Batch(**kwargs)


def test_an_inline_api_cannot_batch() -> None:
    from app import Batch

    with pytest.raises(DeclarationError, match="drop inline or batch"):
        api(inline=True, batch=Batch())  # type: ignore[call-overload]


@pytest.mark.parametrize("kwargs", [{"models": ["m:latest"]}, {"resources": Resources(gpu=1)}])
def test_an_inline_api_on_a_service_with_a_model_or_a_gpu_is_refused(
        kwargs: dict[str, Any]) -> None:
    def glue(self: Any, x: int) -> int:
        return x

    with pytest.raises(DeclarationError, match="may load no models and need no GPU"):
        service(name="heavy-glue", **kwargs)(type("HeavyGlue", (), {"glue": api(inline=True)(glue)}))


def test_a_service_whose_queue_may_hold_no_call_is_refused() -> None:
    with pytest.raises(DeclarationError, match="max_queued must be >= 1"):
        @service(max_queued=0)
        class Nowhere:
            @api
            def f(self) -> int:
                return 1
