# voicebatch image: the CLI, embedded renderer and (from issue 3) API and workers.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 VOICEBATCH_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
RUN pip install '.[postgres]'
VOLUME /data
ENTRYPOINT ["voicebatch"]
CMD ["--help"]
