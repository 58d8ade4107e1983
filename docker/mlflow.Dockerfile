# syntax=docker/dockerfile:1
# MLflow tracking server with the PostgreSQL driver (the official image lacks one; SQLAlchemy 2.1 uses psycopg 3).
# Pinned to the client version the project resolves (mlflow<3.18: see the stack notes).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install "mlflow==3.17.2" "psycopg[binary]>=3.1"

EXPOSE 5000
CMD ["mlflow", "server", "--help"]
