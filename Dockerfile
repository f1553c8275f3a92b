# syntax=docker/dockerfile:1
# Images of the docclass appliance.
#   docker build -t docclass-appliance .                  # API + audit-tool (default target)
#   docker build --target vllm-cpu -t docclass-vllm-cpu . # tiny CPU vLLM for trying it out
#   docker build --target backup -t docclass-backup .     # compose's nightly pg_dump
# On GPU hosts use the vLLM project's own image (see docker-compose.yml, profile gpu).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The compose install's server image: the backup image is built on it, so pg_dump is its version.
ARG POSTGRES_IMAGE=postgres:15-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY audit ./audit
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS appliance
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's Tesseract for OCR of scanned pages (classify-file).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*
# Two accounts: the API (10001) and the audit sealer (10003, owns its state directory, which a
# named volume copies with this ownership on first use).
RUN groupadd --system --gid 10001 docclass \
 && useradd --system --uid 10001 --gid docclass --home-dir /var/lib/docclass --shell /usr/sbin/nologin docclass \
 && install -d -o docclass -g docclass -m 0750 /var/lib/docclass \
 && groupadd --system --gid 10003 docclass-sealer \
 && useradd --system --uid 10003 --gid docclass-sealer --home-dir /var/lib/docclass-sealer --shell /usr/sbin/nologin docclass-sealer \
 && install -d -o docclass-sealer -g docclass-sealer -m 0700 /var/lib/docclass-sealer
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/docclass
EXPOSE 8443
ENTRYPOINT ["appliance"]
CMD ["serve"]

FROM ${PYTHON_IMAGE} AS vllm-cpu
RUN groupadd --system --gid 10002 vllm \
 && useradd --system --uid 10002 --gid vllm --create-home --home-dir /var/lib/vllm vllm
COPY scripts/vllm-cpu.sh /usr/local/bin/vllm-cpu.sh
USER 10002:10002
ENV APPLIANCE_CACHE_DIR=/var/lib/vllm/cache
RUN /usr/local/bin/vllm-cpu.sh setup
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/vllm-cpu.sh", "serve", "--host", "0.0.0.0", "--port", "8000"]

# compose's backup service (compose/backup/docclass-backup.sh): pg_dump as the image's postgres
# account (uid 999, never root), which owns the folder a named volume copies on first use.
FROM ${POSTGRES_IMAGE} AS backup
COPY --chmod=0755 compose/backup/docclass-backup.sh /usr/local/bin/docclass-backup
RUN install -d -o postgres -g postgres -m 0700 /var/lib/docclass-backup
USER 999:999
WORKDIR /var/lib/docclass-backup
ENTRYPOINT ["docclass-backup"]
CMD ["loop"]
