# webhooks-gateway: the HTTP API on port 8080. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t webhooks-gateway .
# Packages come only from scripts/packages.txt (the one list), through scripts/deps.sh.

# ---- build: the project's CMake, Release, the same script CI runs (docker/build.sh) ----
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh scripts/
RUN sh scripts/deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN sh docker/build.sh /build

# ---- runtime: the binary, its shared libraries, curl for the health check ----
FROM debian:bookworm-slim
COPY scripts/packages.txt scripts/packages.sh scripts/deps.sh /tmp/deps/
RUN sh /tmp/deps/deps.sh runtime runtime-gateway \
	&& rm -rf /var/lib/apt/lists/* /tmp/deps \
	&& groupadd --system --gid 10001 webhooks \
	&& useradd --system --uid 10001 --gid webhooks --home-dir /nonexistent --no-create-home \
		--shell /usr/sbin/nologin webhooks
COPY --from=build /build/bin/webhooks-gateway /usr/local/bin/webhooks-gateway
# Configuration is the environment (see README): ADMIN_TOKEN has no default, the gateway
# refuses to start without one (docker run -e ADMIN_TOKEN=..., or compose's .env).
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# 200 only when NATS and webhooks-svc answer (/healthz reads one page of the store).
HEALTHCHECK --interval=10s --timeout=8s --start-period=10s --retries=3 \
	CMD curl -fsS -o /dev/null --max-time 7 "http://127.0.0.1:${GATEWAY_PORT:-8080}/healthz" || exit 1
ENTRYPOINT ["/usr/local/bin/webhooks-gateway"]
