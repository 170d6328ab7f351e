# The engine's image: built in one stage, run from a second with production
# dependencies only, as the unprivileged `node` user.
#   docker build -t margin-engine .    (docker compose up builds it too)

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# npm run build, not tsc alone: it also copies the Lua scripts and the dashboard page into dist.
RUN npm run build

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Migrations, applied by the engine at start-up.
COPY sql ./sql
USER node
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Keys inside the container: docker compose exec engine node dist/cli/keys.js create --role trading --name feed
CMD ["node", "--max-semi-space-size=32", "dist/main.js"]
