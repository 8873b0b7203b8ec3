# Tessera container image.
#
#   docker build -t tessera .
#   docker run --rm tessera migrate      # apply migrations to DATABASE_URL
#   docker run --rm -p 8080:8080 tessera # serve (the default command)
#   (production needs DATABASE_URL; ALLOW_EMBEDDED_DATABASE=true runs one instance on the
#   embedded database in the /app/data volume instead: docs/operations.md "Docker")
#
# Debian (glibc) base on purpose: @node-rs/argon2 ships prebuilt binaries as
# optional dependencies, and the glibc build is the well-trodden path.

# ---------------------------------------------------------------------------
# build: install every dependency (TypeScript included) and compile src/ and
# migrations/ into dist/.
# ---------------------------------------------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app

# Manifests first so the dependency layer is reused while only sources change.
# --ignore-scripts: `prepare` would run `tsc` before the sources are copied in;
# the build is run explicitly below. No dependency needs an install script.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
RUN npm run build

# ---------------------------------------------------------------------------
# runtime: production dependencies, the compiled output and the CLI entry.
# ---------------------------------------------------------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app

# Installed as root, so the application user cannot modify its own code.
# --ignore-scripts skips `prepare` (tsc is not installed here); the argon2
# native binary arrives as a prebuilt optional dependency, no script needed.
# /app/data is the default DATA_DIR of the embedded PGlite mode (DATABASE_URL
# unset) and the only path the application user may write to.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts \
    && npm cache clean --force \
    && mkdir -p /app/data \
    && chown node:node /app/data

COPY --from=build /app/dist ./dist
COPY bin ./bin

# The embedded database (production only with ALLOW_EMBEDDED_DATABASE=true) keeps every user,
# client and key here: a volume, so recreating the container does not lose them.
VOLUME ["/app/data"]

# Unprivileged user provided by the node base image.
USER node

EXPOSE 8080

# Liveness only (/healthz); readiness (/readyz, needs the database) is left to
# the orchestrator, see docker-compose.yml. The slim image has no curl, so
# use Node's global fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Node runs as PID 1 and handles SIGTERM/SIGINT itself (graceful shutdown).
ENTRYPOINT ["node", "bin/tessera.js"]
CMD ["serve"]
