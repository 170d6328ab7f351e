/**
 * Start-up: parse the configuration, build the engine and the app, listen,
 * and shut down gracefully on SIGTERM/SIGINT, within SHUTDOWN_TIMEOUT_MS.
 */
import cluster from 'node:cluster';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import { ConfigError, loadConfig } from './config.js';
import { createEngine } from './engine.js';
import { buildApp } from './http/app.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  // A key never reaches a log line: requests are logged without headers, a
  // key pasted into a URL is masked, and `authorization` is redacted wherever
  // else it would appear.
  const options = {
    level: config.logLevel,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'key'], censor: '[redacted]' },
    serializers: { req: requestForLog(config.adminApiKey) },
  };
  // pretty: one readable line per event, for people at a terminal (synchronous, in this process).
  const log = config.logFormat === 'pretty' ? pino(options, pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true })) : pino(options);
  if (config.workers > 1 && cluster.isPrimary) {
    superviseWorkers(config.workers, config.shutdownTimeoutMs, log);
    return;
  }
  const engine = await createEngine(config, log);
  const first = await engine.apiKeys?.ensureFirstKey();
  if (first) {
    // Printed once, on standard output, not through the logger: only a hash is kept.
    process.stdout.write(
      [
        '',
        'No API key existed, so the engine created this admin key. It is shown only now; keep it safe:',
        '',
        `  ${first.key}`,
        '',
        'Use it as "Authorization: Bearer <key>". Create more with POST /admin/keys or',
        '"npm run keys -- create --role <role> --name <name>"; revoke with "npm run keys -- revoke <key_id>".',
        '',
      ].join('\n') + '\n',
    );
  }
  if (!config.auth) log.warn({ host: config.host }, 'AUTH=off: every request is accepted without a key (loopback only)');
  const app = await buildApp(engine, { logger: log });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new requests, finishing in-flight ones');
    // A store that stopped answering can hold the close for ever (a commit
    // PostgreSQL never confirms stays in flight): past the deadline, give up
    // and exit non-zero rather than wait for a supervisor's SIGKILL. A
    // repeated signal is ignored, not taken as "exit now": a cluster worker
    // gets the terminal's SIGINT and its supervisor's too.
    setTimeout(() => {
      log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish within SHUTDOWN_TIMEOUT_MS; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    try {
      // Keep-alive sockets that finish their request during shutdown become
      // idle after close() began; close those too, or close() waits for the
      // keep-alive timeout.
      const reaper = setInterval(() => app.server.closeIdleConnections(), 100);
      await app.close(); // stops accepting and waits for in-flight requests
      clearInterval(reaper);
      log.info('http server closed; flushing pending writes');
      await engine.close(); // flushes pending ledger writes, closes clients
      log.info('stopped');
      process.exit(0);
    } catch (error) {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  await app.listen({ host: config.host, port: config.port });
}

/**
 * WORKERS > 1: this process only supervises. Each worker is a complete engine
 * (its own clients, its own lock identity) sharing the listening port; they
 * coordinate through Redis and PostgreSQL exactly as separate hosts would.
 * On SIGTERM/SIGINT it passes the signal on and exits once every worker has:
 * 0 if each stopped cleanly, else 1.
 */
function superviseWorkers(count: number, shutdownTimeoutMs: number, log: Logger): void {
  let stopping = false;
  let failed = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < count; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (code !== 0) failed = true;
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
      return;
    }
    log.error({ pid: worker.process.pid, code, signal }, 'engine worker died; starting another');
    fork();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping engine workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    // Each worker keeps its own deadline; this one is a second later, so a
    // worker's own line says why it gave up, and only a worker that cannot
    // even exit is killed here.
    setTimeout(() => {
      const left = Object.values(cluster.workers ?? {}).map((w) => w?.process.pid);
      log.error({ timeoutMs: shutdownTimeoutMs, pids: left }, 'engine workers did not stop within SHUTDOWN_TIMEOUT_MS; killing them');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      process.exit(1);
    }, shutdownTimeoutMs + 1000);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** What a request log line shows: fastify's usual fields, with anything that looks like a key masked in the URL. */
function requestForLog(adminKey: string | null) {
  return (req: { method?: string; url?: string; host?: string; ip?: string; socket?: { remotePort?: number } }) => {
    let url = String(req.url ?? '').replace(/(key_[0-9a-f]{12})\.[A-Za-z0-9_-]+/g, '$1.[redacted]');
    if (adminKey !== null && url.includes(adminKey)) url = url.split(adminKey).join('[redacted]');
    return { method: req.method, url, host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`margin engine failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
