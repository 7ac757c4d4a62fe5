# webhooks-svc: answers the webhooks.* NATS subjects; no port (GET /metrics listens on the
# container's loopback unless METRICS_BIND says otherwise). Build from the repository root:
#   docker build -f docker/webhooks-svc.Dockerfile -t webhooks-svc .
# Packages come only from scripts/packages.txt (the one list), through scripts/deps.sh.

# ---- build: identical to gateway.Dockerfile's, so the two images share its cached layers ----
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh scripts/
RUN sh scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN sh docker/build.sh /build

# ---- runtime: the binary and its shared libraries ----
FROM debian:bookworm-slim
COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh /tmp/deps/
RUN sh /tmp/deps/deps.sh runtime runtime-svc \
	&& rm -rf /var/lib/apt/lists/* /tmp/deps \
	&& groupadd --system --gid 10001 webhooks \
	&& useradd --system --uid 10001 --gid webhooks --home-dir /nonexistent --no-create-home \
		--shell /usr/sbin/nologin webhooks \
	&& install -d -o webhooks -g webhooks -m 0750 /var/lib/webhooks
COPY --from=build /build/bin/webhooks-svc /usr/local/bin/webhooks-svc
COPY docker/svc-healthcheck.sh /usr/local/bin/webhooks-svc-healthcheck
# The SQLite store (the default) keeps its file in the volume; compose sets a mongodb:// URL.
ENV STORE_URL=sqlite:/var/lib/webhooks/webhooks.db
WORKDIR /var/lib/webhooks
VOLUME ["/var/lib/webhooks"]
USER 10001:10001
STOPSIGNAL SIGTERM
# Healthy while the service holds a TCP connection to NATS (see docker/svc-healthcheck.sh).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
	CMD ["/bin/sh", "/usr/local/bin/webhooks-svc-healthcheck"]
ENTRYPOINT ["/usr/local/bin/webhooks-svc"]
