# tt-file-server in a container. Untested here (no Docker daemon on the machine it was
# written on); test/cli/deploy.test.ts runs its steps' commands without Docker.
# docs/operations.md says how to run it: publish 8600 to clients, keep 8601 and 8602 private.

# Build: every dependency (TypeScript included), then compile src/ to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before src/ is copied in.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src src
RUN npm run build

# Run: production dependencies, the compiled daemon and its .proto files; no compiler.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` runs the build, which needs TypeScript; dist/ comes from the build stage.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY proto proto
COPY --from=build /app/dist/src dist/src
RUN mkdir /data && chown node:node /data
# The msg_server and admin ports listen on every interface of the container, since
# their loopback default is unreachable from outside it. Publish them to private
# addresses only, and list msg_server's address in TTFS_MSG_ALLOW.
ENV TTFS_DATA_DIR=/data \
    TTFS_MSG_HOST=0.0.0.0 \
    TTFS_ADMIN_HOST=0.0.0.0
VOLUME /data
USER node
# client, msg_server, admin HTTP
EXPOSE 8600 8601 8602
# Slim images have no curl: Node's fetch asks the admin port's /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.TTFS_ADMIN_PORT || 8602}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node is PID 1 and handles SIGTERM and SIGINT itself (NodeRuntime.runMain); it starts
# no child processes, so nothing needs reaping and no init (tini, --init) is needed.
STOPSIGNAL SIGTERM
CMD ["node", "--max-semi-space-size=2", "dist/src/cli/main.js", "serve"]
