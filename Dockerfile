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
COPY web/ web/
RUN pip install --no-cache-dir . && useradd --create-home medshadow
USER medshadow
ENV MEDSHADOW_DATA_DIR=/home/medshadow/data
EXPOSE 8000
# `docker compose run --rm api medshadow demo` generates and loads the sample ecosystem.
CMD ["medshadow", "serve"]
