FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY cli cli
COPY worker worker
COPY provisioning provisioning
COPY mailsink mailsink
COPY templates templates
RUN pip install --no-cache-dir -e . && useradd --system provisioner && mkdir -p var \
    && chown provisioner var
USER provisioner
ENV PROVISIONING_VAR_DIR=/app/var PROVISIONING_API_BIND=0.0.0.0:8000
EXPOSE 8000
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]
