# One image for every role of the multi-machine deployment (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY platform ./platform
COPY migrations ./migrations
RUN pip install --no-cache-dir -e '.[postgres]'
ENV SEEDCORE_DATA_DIR=/data SEEDCORE_MLRUNS_DIR=/data/mlruns SEEDCORE_HOST=0.0.0.0
EXPOSE 8000
CMD ["seedcore", "up", "--no-mlflow-ui"]
