# Two images from one file:
#   --target api     the REST API and Flower: Braid and its web stack, no torch, no models
#   --target worker  model workers: the same plus the model stack (the `models` extra)
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
WORKDIR /srv/braid
RUN useradd --create-home --uid 10001 braid && mkdir -p /models /state \
    && chown braid /models /state
COPY pyproject.toml README.md ./
COPY app ./app
COPY api ./api
COPY workers ./workers
COPY bench ./bench

FROM base AS api
RUN pip install .
USER braid
EXPOSE 8000 5555
CMD ["braid", "api", "--host", "0.0.0.0"]

FROM base AS worker
RUN pip install ".[models]"
USER braid
CMD ["braid", "worker", "--help"]
