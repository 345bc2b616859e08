# A stand-in for python:3.12-slim-bookworm where no image registry is reachable
# (scripts/compose-check.sh): Debian's own Python (3.11 on bookworm) on a debootstrapped Debian.
# Build context: a folder holding ca-bundle.crt, the build machine's CA bundle (pip inside the
# builds reaches PyPI through whatever the machine trusts).
ARG DEBIAN_IMAGE=xstilts-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN DEBIAN_FRONTEND=noninteractive apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-bundle.crt /etc/ssl/certs/build-ca-bundle.crt
ENV PIP_CERT=/etc/ssl/certs/build-ca-bundle.crt
CMD ["python3"]
