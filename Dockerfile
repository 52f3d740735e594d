FROM python:3.11-slim
WORKDIR /srv/medshadow
COPY pyproject.toml README.md ./
COPY app graph ontology nlp resolvers loaders terminology access web ./
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["medshadow", "serve"]
