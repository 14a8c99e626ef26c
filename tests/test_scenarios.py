"""The model-composition scenarios over REST, on real transformers models from the store."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app._models import ModelStore
from tests.harness import ROOT, System
from tests.jobs_helpers import run, wait

SERVICES = ["braid", "aggregator", "bert-base-uncased", "data-model", "distil-gpt2", "gpt2",
            "image-model", "inference-service", "model-a-service", "model-b-service",
            "multi-model-service", "preprocessing-service", "text-model"]
PIXEL_LIMIT = 64 * 64


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[System]:
    """Every demo service of `workers`, with its models from the store, and the API."""
    system = System(tmp_path_factory.mktemp("demo"), "workers",
                    BRAID_MAX_IMAGE_PIXELS=str(PIXEL_LIMIT))
    try:
        yield system.up(SERVICES, timeout=240)
    finally:
        system.close()


@pytest.fixture
def api(demo: System) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=60) as client:
        yield client


def _model(name: str, store: Path) -> Path:
    return ModelStore(store).get(name).path


def _png(size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_mandelbrot(size, (-2, -1.5, 1, 1.5), 40).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def test_text_model_returns_the_models_real_output(api: httpx.Client, model_store: Path) -> None:
    from transformers import pipeline

    view = run(api, "/v1/services/text-model/analyze_text/jobs",
               {"text": "I love this movie", "top_k": 2})
    expected = pipeline("text-classification", model=str(_model("bert-sentiment", model_store)))(
        "I love this movie", top_k=2)
    assert [r["label"] for r in view["result"]] == [r["label"] for r in expected]
    assert np.allclose([r["score"] for r in view["result"]], [r["score"] for r in expected])


def test_orchestrator_combines_image_text_and_data_branches(api: httpx.Client) -> None:
    response = api.post("/v1/pipelines/inference-orchestrator/jobs",
                        files={"image": ("pic.png", _png(), "image/png")},
                        data={"text": "What a fantastic idea", "data": '{"a": 1, "b": 2.5, "c": "x"}'})
    assert response.status_code == 202, response.text
    result = wait(api, response.json()["id"], 60)["result"]
    assert {r["label"] for r in result["image"]} == {"cat", "dog", "bird"}
    assert result["text"][0]["label"] in ("POSITIVE", "NEGATIVE")
    assert result["data"] == {"fields": 3, "numeric": 2, "sum": 3.5, "mean": 1.75}


def test_image_by_multipart_and_by_base64_give_the_same_result(api: httpx.Client) -> None:
    png = _png()
    by_file = api.post("/v1/services/image-model/process_image/jobs",
                       files={"image": ("pic.png", png, "image/png")})
    by_json = api.post("/v1/services/image-model/process_image/jobs",
                       json={"image": base64.b64encode(png).decode()})
    assert wait(api, by_file.json()["id"])["result"] == wait(api, by_json.json()["id"])["result"]


def test_corrupt_and_oversized_images_are_refused_with_the_reason(api: httpx.Client) -> None:
    corrupt = api.post("/v1/services/image-model/process_image/jobs",
                       files={"image": ("pic.png", b"\x89PNG not really", "image/png")})
    assert corrupt.status_code == 422
    assert "not a readable image file" in corrupt.json()["detail"]
    assert "BytesIO" not in corrupt.json()["detail"] and "0x" not in corrupt.json()["detail"]
    big = api.post("/v1/services/image-model/process_image/jobs",
                   files={"image": ("big.png", _png((100, 100)), "image/png")})
    assert big.status_code == 422
    assert f"over the limit of {PIXEL_LIMIT}" in big.json()["detail"]


def test_array_of_wrong_shape_or_dtype_is_422_naming_expected_and_got(api: httpx.Client) -> None:
    shape = api.post("/v1/services/inference-service/predict/jobs",
                     json={"features": [[0.1, 0.2, 0.3]]})
    assert shape.status_code == 422
    assert "expected float32, shape (*, 384); got" in shape.json()["detail"]
    assert "shape (1, 3)" in shape.json()["detail"]
    dtype = api.post("/v1/services/inference-service/predict/jobs",
                     json={"features": {"data": [[1] * 384], "dtype": "int64"}})
    assert dtype.status_code == 422 and "got int64, shape (1, 384)" in dtype.json()["detail"]


def test_multi_model_service_combined_equals_both_apis_and_loads_models_once(
        api: httpx.Client) -> None:
    text = "A man is eating food."
    a = run(api, "/v1/services/multi-model-service/process_a/jobs", {"text": text})["result"]
    b = run(api, "/v1/services/multi-model-service/process_b/jobs", {"text": text})["result"]
    both = run(api, "/v1/services/multi-model-service/combined_process/jobs", {"text": text})
    assert both["result"]["a"] == a
    assert np.allclose(both["result"]["b"], b)
    loads = run(api, "/v1/services/multi-model-service/loads/jobs", {})["result"]
    assert (loads["classifier"], loads["embedder"]) == (1, 1)


def test_preprocess_predict_returns_probabilities_per_input(api: httpx.Client) -> None:
    view = run(api, "/v1/pipelines/preprocess-predict/jobs",
               {"input_data": ["I love it", "I hate it", "meh"]})
    result = view["result"]
    assert (result["dtype"], result["shape"]) == ("float32", [3, 2])
    assert np.allclose(np.array(result["data"]).sum(axis=1), 1, atol=1e-5)
    assert [view["steps"][s]["service"] for s in view["steps"]] == [
        "preprocessing-service", "inference-service"]


def _embeddings(texts: list[str], store: Path) -> np.ndarray:
    from workers._embedding import Embedder

    return np.asarray(Embedder(_model("all-minilm-l6-v2", store), "cpu")(texts), dtype=np.float32)


def test_ensemble_is_the_average_of_both_models_computed_in_process(
        api: httpx.Client, model_store: Path) -> None:
    from workers._head import Head

    texts = ["I love this movie", "The food was bad"]
    view = run(api, "/v1/pipelines/ensemble/jobs", {"input_data": texts})
    features = _embeddings(texts, model_store)
    a = Head(_model("ensemble-head-a", model_store), "cpu")(features)
    b = Head(_model("ensemble-head-b", model_store), "cpu")(features)
    assert np.allclose(np.array(view["result"]["data"], dtype=np.float32), (a + b) / 2, atol=1e-6)
    assert [view["steps"][s]["service"] for s in view["steps"]] == [
        "preprocessing-service", "model-a-service", "model-b-service", "aggregator"]
    download = api.get(f"/v1/jobs/{view['id']}/result", params={"format": "npy"})
    assert download.headers["content-type"] == "application/x-npy"
    assert np.array_equal(np.load(io.BytesIO(download.content)),
                          np.array(view["result"]["data"], dtype=np.float32))
    assert api.get(f"/v1/jobs/{view['id']}/result", params={"format": "png"}).status_code == 406


def test_inference_graph_scores_every_generated_text_like_the_classifier_in_process(
        api: httpx.Client, model_store: Path) -> None:
    from transformers import pipeline

    view = run(api, "/v1/pipelines/inference-graph/jobs", {}, timeout=120)
    result: list[dict[str, Any]] = view["result"]
    assert len(result) == 2 and view["steps"]["bert-base-uncased.classify_generated_texts"][
        "size"] == 2
    assert all(r["generated"].startswith("I have an idea!") for r in result)
    classify = pipeline("text-classification", model=str(_model("bert-sentiment", model_store)))
    for r in result:
        expected = {x["label"]: x["score"] for x in classify(r["generated"], top_k=None)}
        assert r["score"] == pytest.approx(expected["POSITIVE"], abs=1e-6)


def test_draft_and_score_scores_gpt2s_draft_as_it_streams_like_the_models_in_process(
        api: httpx.Client, model_store: Path) -> None:
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    # given GPT-2's greedy continuation of a prompt, generated here by transformers
    prompt, tokens = "I have an idea!", 8
    path = str(_model("gpt2", model_store))
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    generated = AutoModelForCausalLM.from_pretrained(path).generate(
        ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    draft = tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)
    # when draft-and-score runs, scoring at every chunk, followed over its stream
    job = api.post("/v1/pipelines/draft-and-score/jobs",
                   json={"prompt": prompt, "max_new_tokens": tokens, "every": 1}).json()["id"]
    chunks = []
    with api.stream("GET", f"/v1/jobs/{job}/stream") as response:
        kind = ""
        for line in response.iter_lines():
            kind = line[7:] if line.startswith("event: ") else kind
            if line.startswith("data: ") and kind == "chunk":
                chunks += json.loads(line[6:])["items"]
    view = wait(api, job, 60)
    # then the scores came as a stream, one per piece of the draft, the last over the whole
    # draft, each what the classifier says of that text in process
    assert view["state"] == "succeeded" and view["result"] == chunks
    assert chunks[-1]["text"] == draft and len(chunks) > 1
    assert all(draft.startswith(c["text"]) for c in chunks)
    classify = pipeline("text-classification", model=str(_model("bert-sentiment", model_store)))
    for c in chunks:
        expected = {x["label"]: x["score"] for x in classify(c["text"], top_k=None)}
        assert c["positive"] == pytest.approx(expected["POSITIVE"], abs=1e-6)


@pytest.mark.parametrize("pipeline", ["ensemble", "preprocess-predict"])
def test_embeddings_given_as_an_array_give_what_their_texts_give(
        api: httpx.Client, model_store: Path, pipeline: str) -> None:
    # given texts, and their MiniLM embeddings computed here
    texts = ["I love this movie", "The food was bad"]
    array = _embeddings(texts, model_store)
    # when the pipeline runs once on the texts and once on the array (as the guide's np.ndarray)
    by_texts = run(api, f"/v1/pipelines/{pipeline}/jobs", {"input_data": texts})["result"]
    by_array = run(api, f"/v1/pipelines/{pipeline}/jobs",
                   {"input_data": {"data": array.tolist(), "dtype": "float32"}})["result"]
    # then both give the same probabilities
    assert by_array["shape"] == by_texts["shape"] == [2, 2]
    assert np.allclose(by_array["data"], by_texts["data"], atol=1e-5)


@pytest.mark.parametrize("sentence", ["我有一个主意\uff01🙂", "I have an idea! " * 200],
                         ids=["non-ascii", "longer-than-the-model-reads"])
def test_inference_graph_takes_any_sentence_within_the_limit(api: httpx.Client,
                                                             sentence: str) -> None:
    # given a sentence of other scripts and emoji, or one of more tokens than GPT-2 reads
    # when the inference graph runs on it
    view = run(api, "/v1/pipelines/inference-graph/jobs", {"original_sentence": sentence},
               timeout=120)
    # then both generators continue it (one sequence each) and both texts are scored
    assert view["state"] == "succeeded"
    assert [r["generated"].startswith(sentence) for r in view["result"]] == [True, True]


def test_several_sequences_without_sampling_are_the_same_best_beams_each_time(
        api: httpx.Client) -> None:
    # given a generator asked for three sequences, sampling off (the default)
    body = {"sentence": "I have an idea!", "num_return_sequences": 3}
    # when it is asked twice
    first = run(api, "/v1/services/gpt2/generate/jobs", body)["result"]
    second = run(api, "/v1/services/gpt2/generate/jobs", body)["result"]
    # then it answers three different continuations, the same both times
    assert len(set(first)) == 3 and first == second


def test_a_text_longer_than_the_model_reads_is_truncated(api: httpx.Client) -> None:
    # given a text of far more tokens than the classifier's 128 positions (within the limit)
    text = "The food was bad and the service was slow. " * 200
    # when the multi-model service reads it
    view = run(api, "/v1/services/multi-model-service/combined_process/jobs", {"text": text})
    # then both of its models answer
    assert {r["label"] for r in view["result"]["a"]} == {"NEGATIVE", "POSITIVE"}
    assert len(view["result"]["b"]) == 384


@pytest.mark.parametrize("pipeline", ["preprocess-predict", "ensemble"])
def test_an_empty_list_is_no_rows_of_embeddings_and_gives_no_rows(api: httpx.Client,
                                                                  pipeline: str) -> None:
    # given an input of no texts and no embeddings (as the OpenAPI schema allows: an array
    # of shape (0, 384))
    # when it is submitted
    view = run(api, f"/v1/pipelines/{pipeline}/jobs", {"input_data": []})
    # then the job succeeds with no rows of probabilities
    assert view["result"] == {"dtype": "float32", "shape": [0, 2], "data": []}


BAD_INPUTS = [
    ("/v1/pipelines/preprocess-predict/jobs", {"input_data": ["a"] * 513}, "input_data.texts",
     "List should have at most 512 items"),
    ("/v1/pipelines/ensemble/jobs", {"input_data": [[0.5, 0.5]]}, "input_data.embeddings",
     "expected float32, shape (*, 384); got float64, shape (1, 2)"),
    ("/v1/services/multi-model-service/combined_process/jobs", {"text": "x" * 100_000}, "text",
     "String should have at most 10000 characters"),
    ("/v1/pipelines/inference-graph/jobs", {"original_sentence": ""}, "original_sentence",
     "String should have at least 1 character"),
    ("/v1/services/gpt2/generate/jobs", {"sentence": "hi", "max_new_tokens": -1},
     "max_new_tokens", "Input should be greater than or equal to 1"),
    ("/v1/services/gpt2/generate/jobs", {"sentence": "hi", "max_new_tokens": 100_000},
     "max_new_tokens", "Input should be less than or equal to 128"),
    ("/v1/services/distil-gpt2/generate/jobs", {"sentence": "hi", "num_return_sequences": 0},
     "num_return_sequences", "Input should be greater than or equal to 1"),
    ("/v1/services/text-model/analyze_text/jobs", {"text": "hi", "top_k": 0}, "top_k",
     "Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("path", "body", "field", "message"), BAD_INPUTS,
                         ids=[f"{p.split('/')[3]}:{f}:{m[:24]}" for p, _, f, m in BAD_INPUTS])
def test_out_of_bounds_input_is_422_naming_the_field_and_the_limit(
        api: httpx.Client, path: str, body: dict[str, Any], field: str, message: str) -> None:
    # given an input outside what the API declares
    # when it is submitted
    response = api.post(path, json=body)
    # then nothing is queued, and the answer names the field and its limit
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]


def test_inference_graphs_run_together_batch_their_models_and_score_like_alone(
        api: httpx.Client, model_store: Path) -> None:
    from transformers import pipeline

    # given six inference graphs submitted at once
    sentences = [f"I have an idea number {i}!" for i in range(6)]
    jobs = [api.post("/v1/pipelines/inference-graph/jobs", json={"original_sentence": s})
            .json()["id"] for s in sentences]
    views = [wait(api, job, 120) for job in jobs]
    # then each continued its own sentence and scored its own texts as the model does alone
    classify = pipeline("text-classification", model=str(_model("bert-sentiment", model_store)))
    for sentence, view in zip(sentences, views, strict=True):
        assert view["state"] == "succeeded"
        for r in view["result"]:
            assert r["generated"].startswith(sentence)
            expected = {x["label"]: x["score"] for x in classify(r["generated"], top_k=None)}
            assert r["score"] == pytest.approx(expected["POSITIVE"], abs=1e-5)
    # and their scoring steps shared model calls
    sizes = [step["batch"]["size"] for view in views for name, step in view["steps"].items()
             if name.startswith("bert-base-uncased.classify_generated_texts[")]
    assert max(sizes) > 1, sizes


def test_minilm_embeddings_through_a_service_are_the_real_ones(api: httpx.Client) -> None:
    def similarity(a: str, b: str) -> float:
        result = run(api, "/v1/services/preprocessing-service/similarity/jobs", {"a": a, "b": b})
        return float(result["result"])

    assert similarity("A man is eating food.", "A man is eating a piece of bread.") > 0.6
    assert similarity("A man is eating food.", "The new movie is awesome.") < 0.2


def test_each_service_consumes_only_its_own_queue(demo: System) -> None:
    from app._celery import create_celery
    from app._registry import CORE
    from app._settings import Settings

    celery = create_celery(Settings(redis_url=demo.redis_url), [CORE])
    try:
        active = celery.control.inspect(timeout=2).active_queues() or {}
    finally:
        celery.close()
    queues = {name.split("@")[0]: [q["name"] for q in qs] for name, qs in active.items()}
    assert queues == {svc: [svc] for svc in SERVICES}


def test_services_report_their_device_and_model_versions(demo: System) -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "services"], cwd=ROOT, env=demo.env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    import json

    services = {s["name"]: s for s in map(json.loads, out.splitlines())}
    image = services["image-model"]
    assert image["resources"]["gpu"] == 1 and image["models"] == ["vit-classifier:latest"]
    assert [p["device"] for p in image["processes"]] == ["cpu"]
    assert image["processes"][0]["models"] == ["vit-classifier:v1"]


def test_bootstrap_fills_an_empty_store_and_a_missing_model_stops_a_worker(
        tmp_path: Path) -> None:
    env = {**os.environ, "BRAID_MODELS_DIR": str(tmp_path / "store"), "HF_HUB_OFFLINE": "1",
           "BRAID_REDIS_URL": "redis://127.0.0.1:1/0"}
    refused = subprocess.run([sys.executable, "-m", "app.cli", "worker", "text-model"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "model 'bert-sentiment:latest' is not in the model store" in refused.stderr
    assert "braid models bootstrap" in refused.stderr
    built = subprocess.run([sys.executable, "-m", "app.cli", "models", "bootstrap"], cwd=ROOT,
                           env=env, check=True, capture_output=True, text=True, timeout=300)
    assert "torchvision" not in built.stdout + built.stderr  # no warning that alarms a new user
    listed = subprocess.run([sys.executable, "-m", "app.cli", "models", "list"], cwd=ROOT,
                            env=env, check=True, capture_output=True, text=True).stdout
    tags = {line.split()[0] for line in listed.splitlines()}
    assert tags == {"all-minilm-l6-v2:v1", "bert-features:v1", "bert-sentiment:v1",
                    "distilgpt2:v1", "embedding-head:v1", "ensemble-head-a:v1",
                    "ensemble-head-b:v1", "gpt2:v1", "vit-classifier:v1"}
    assert all("sha256:" in line and " MB" in line for line in listed.splitlines())


def _readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    scenarios = text.split("## The reference scenarios", 1)[1].split("\n## ", 1)[0]
    blocks = scenarios.split("```sh\n")[1:]
    return [b.split("```", 1)[0].strip() for b in blocks if b.startswith("curl -s -X POST")]


def test_every_scenario_curl_in_the_readme_works_as_documented(demo: System,
                                                               api: httpx.Client) -> None:
    import json

    curls = _readme_curls()
    assert len(curls) == 6
    for command in curls:
        out = subprocess.run(["bash", "-c", command.replace("localhost:8000", demo.url[7:])],
                             cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
        accepted = json.loads(out.stdout)
        assert accepted["state"] == "queued", command
        assert wait(api, accepted["id"], 120)["state"] == "succeeded", command


SCHEMATHESIS = ["--checks", "all", "--phases", "examples,coverage,fuzzing", "--max-examples",
                "25", "--seed", "1", "--generation-database", "none", "--request-timeout", "30",
                "--no-color"]
"""The contract run: every check, bounded (25 cases per operation and phase, about 30 s),
reproducible (one seed); pinned with schemathesis itself in pyproject.toml."""


def test_the_reference_api_keeps_its_openapi_contract(demo: System, tmp_path: Path) -> None:
    """Given the reference services, when Schemathesis runs every check of its examples,
    coverage and fuzzing phases against /openapi.json, then it finds no failure: no 5xx,
    every status and header documented, every schema-valid request accepted and every
    schema-violating one refused. Its hooks (tests.contract_hooks) make the images and
    .npy files that a JSON schema can only name; tests/schemathesis.toml documents the one
    answer that depends on the resource rather than the request (a 406)."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file",
         str(ROOT / "tests" / "schemathesis.toml"), "run", f"{demo.url}/openapi.json",
         *SCHEMATHESIS],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**demo.env, "SCHEMATHESIS_HOOKS": "tests.contract_hooks"})
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"(\d+) generated, \1 passed", result.stdout), result.stdout[-3000:]
