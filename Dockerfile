# syntax=docker/dockerfile:1
# Node 24 is an LTS line (supported into 2028); override with --build-arg NODE_IMAGE=... to move.
ARG NODE_IMAGE=node:24-bookworm-slim

# Build: compile TypeScript with the dev dependencies; nothing from this stage ships but dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime: production dependencies only, unprivileged, read-only-root friendly.
FROM ${NODE_IMAGE} AS runtime
# tini is PID 1 so SIGTERM reaches node (which then drains) and zombies are reaped.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    IMKIT_BRIDGE_CONFIG=/etc/imkit-bridge/bridge.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Numeric, so Kubernetes' runAsNonRoot can verify it (1000 is the image's "node" user).
USER 1000:1000
EXPOSE 9464
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/cli.js", "run"]
