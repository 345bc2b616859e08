# A stand-in for redis:7 where no image registry is reachable (scripts/compose-check.sh): Debian's
# Redis 7.0. As in the official image, `redis-server` without a configuration file listens on
# every address of the container with protected mode off (the compose network is the boundary).
ARG DEBIAN_IMAGE=xstilts-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN DEBIAN_FRONTEND=noninteractive apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
