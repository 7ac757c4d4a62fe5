# webhooks-nats: NATS with JetStream from Debian's nats-server package, on the same base as the
# project's images. For machines that cannot pull the official nats image (scripts/docker-local.sh
# builds it; tests/docker runs docker-compose.yml with it through docker/compose.local.yml).
# docker-compose.yml itself runs the official image. Build from the repository root:
#   docker build -f docker/nats.Dockerfile -t webhooks-nats .
# Packages come only from scripts/packages.txt (the one list), through scripts/deps.sh.
FROM debian:bookworm-slim
COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh /tmp/deps/
# The package makes the system user nats; /data (JetStream's store) belongs to it, so that a
# new volume mounted there starts out writable.
RUN sh /tmp/deps/deps.sh runtime-nats \
	&& rm -rf /var/lib/apt/lists/* /tmp/deps \
	&& install -d -o nats -g nats -m 0750 /data
VOLUME ["/data"]
USER nats:nats
EXPOSE 4222 8222
STOPSIGNAL SIGTERM
# /healthz answers 200 once the server (and JetStream) is ready; the same check as compose's.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=12 \
	CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8222/healthz"]
# Without a command: JetStream in /data, monitoring on 8222 and no authorization, which
# docker-compose.yml adds (see there); flags given to `docker run IMAGE` replace these.
ENTRYPOINT ["nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
