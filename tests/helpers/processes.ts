/**
 * Real processes for fault tests: the engine as a child (so it can be
 * SIGKILLed) and a private redis-server (so it can be killed and restarted
 * empty) — never the machine's shared services. Loopback only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { ADMIN_KEY } from './engine.js';
import { until } from './until.js';

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Until `check` answers true; a failing check (nothing listening yet) counts as false. */
async function waitUntil(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  await until(() => check().catch(() => false), { timeoutMs: ms, what: `${what} coming up` });
}

/** SIGKILL and wait for the exit (no-op without a process). */
async function killHard(proc: ChildProcess | null): Promise<void> {
  if (!proc) return;
  proc.kill('SIGKILL');
  await exited(proc);
}

function exited(proc: ChildProcess): Promise<void> {
  return proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((r) => proc.once('exit', () => r()));
}

export class EngineProcess {
  private proc: ChildProcess | null = null;
  readonly base: string;
  stderr = '';

  constructor(
    private readonly env: Record<string, string>,
    readonly port: number,
  ) {
    this.base = `http://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ADMIN_API_KEY: ADMIN_KEY, ...this.env, HOST: '127.0.0.1', PORT: String(this.port), LOG_LEVEL: this.env.LOG_LEVEL ?? 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Logs (stdout) and errors (stderr), kept for a failing test to show.
    const keep = (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-20_000));
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    await waitUntil(async () => (await fetch(`${this.base}/ready`)).ok, 20_000, 'engine');
  }

  /** SIGKILL: no shutdown hooks, no flush, as in a crash. */
  async kill(): Promise<void> {
    await killHard(this.proc);
    this.proc = null;
  }

  /** SIGTERM and wait for the exit; returns the exit code. */
  async terminate(): Promise<number | null> {
    if (!this.proc) return null;
    const p = this.proc;
    p.kill('SIGTERM');
    await exited(p);
    this.proc = null;
    return p.exitCode;
  }
}

export class PrivateRedis {
  private proc: ChildProcess | null = null;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts empty: no RDB, no AOF, like the machine's Redis after a restart. */
  async start(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    await waitUntil(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(this.port, '127.0.0.1', () => {
            s.end();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      10_000,
      'redis-server',
    );
  }

  async kill(): Promise<void> {
    await killHard(this.proc);
    this.proc = null;
  }

  /** SIGSTOP: the server stops answering but keeps its connections (a hang). */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.proc?.kill('SIGCONT');
  }
}
