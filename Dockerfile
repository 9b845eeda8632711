# voicebatch image: the CLI, embedded renderer, submit API, Celery workers and Flower.
# docker-compose.yml builds it once as voicebatch:latest and runs every service from it.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 VOICEBATCH_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
# maya1: torch (on Linux PyPI's torch wheel brings CUDA), transformers, snac, torchao;
# onnx: onnxruntime for an exported SNAC decoder (swap in onnxruntime-gpu on GPU hosts).
RUN pip install '.[server,maya1,onnx]'
# A non-root user owning /data (named volumes mounted there inherit this ownership).
RUN useradd --system --create-home --uid 10001 voicebatch \
    && mkdir -p /data && chown voicebatch:voicebatch /data
USER voicebatch
VOLUME /data
# 8000: submit API, 5555: Flower, 9100: worker Prometheus metrics.
EXPOSE 8000 5555 9100
ENTRYPOINT ["voicebatch"]
CMD ["--help"]
