# syntax=docker/dockerfile:1
#
# certbound: certificate-bound OAuth access token gateway (RFC 8705).
#
#   docker build -t certbound:dev .
#   docker run --rm --read-only --tmpfs /tmp -p 8443:8443 -p 9091:9091 \
#     -v "$PWD/gateway.yaml:/etc/certbound/gateway.yaml:ro" certbound:dev
#
# Base image: the current Node.js LTS on Debian bookworm (slim). Pin it by
# digest in your registry mirror for reproducible builds.
ARG NODE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------------------
# Build stage: full dependency tree (TypeScript etc.), compile src/ -> dist/.
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------------------
# Runtime stage: production dependencies + compiled output only.
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# --max-semi-space-size=8: under a container memory limit (256Mi in deploy/), Node sizes V8's young
# generation from the limit and certbound then spends its time in scavenges: ~6,000 a second at
# saturation, 19-21k instead of 29k req/s and 2-3x the p99 (docs/operations.md, Memory). 8 MiB
# semi-spaces restore the unconstrained throughput for ~15 MiB more RSS.
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps --max-semi-space-size=8" \
    CERTBOUND_CONFIG=/etc/certbound/gateway.yaml \
    HOME=/tmp

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /root/.npm /tmp/*

# Application files stay owned by root and are not writable by the runtime
# user. Nothing is written outside /tmp at runtime, so the container runs with
# a read-only root filesystem (Kubernetes: readOnlyRootFilesystem + an emptyDir
# at /tmp; Docker: --read-only --tmpfs /tmp).
COPY --from=build /app/dist ./dist

# Dedicated unprivileged user; the Kubernetes manifests pin the same uid/gid.
RUN groupadd --system --gid 10001 certbound \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin certbound \
 && mkdir -p /etc/certbound
USER 10001:10001

# 8443: traffic listener (mTLS, or plain HTTP behind ingress-nginx)
# 9091: admin listener (/metrics, /healthz, /readyz)
EXPOSE 8443 9091

# On SIGTERM certbound turns /readyz false, stops accepting, drains in-flight
# requests for shutdown.grace_period_seconds, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve", "--config", "/etc/certbound/gateway.yaml"]
