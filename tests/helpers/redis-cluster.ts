/**
 * A private Redis Cluster for the `cluster` test project: three primaries and
 * three replicas, started from the installed redis-server on free loopback
 * ports (each node's cluster bus is its port + 10000), in a temporary
 * directory, and shut down (SHUTDOWN NOSAVE, each node by its own port)
 * afterwards. Never the machine's shared Redis.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function isFree(port: number): Promise<boolean> {
  const srv = net.createServer();
  return new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** `n` ports P whose cluster bus port P + 10000 is free too. */
async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < n && attempt < 2000; attempt++) {
    const p = 20000 + Math.floor(Math.random() * 30000);
    if (!ports.includes(p) && (await isFree(p)) && (await isFree(p + 10000))) ports.push(p);
  }
  if (ports.length < n) throw new Error('no free ports for the test cluster');
  return ports;
}

const cli = (port: number, ...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 });

export interface TestCluster {
  /** `host:port,...` of every node (REDIS_CLUSTER_NODES). */
  readonly nodes: string;
  stop(): Promise<void>;
}

export async function startCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'me-cluster-'));
  const ports = await freePorts(6);
  const started: number[] = [];
  const stop = async () => {
    await Promise.all(started.map((p) => cli(p, 'shutdown', 'nosave').catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      await run('redis-server', [
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '2000',
        '--save', '',
        '--appendonly', 'no',
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--daemonize', 'yes',
        '--dir', dir,
        '--logfile', join(dir, `redis-${port}.log`),
      ]);
      started.push(port);
    }
    for (const port of ports) await waitFor(async () => (await cli(port, 'ping')).stdout.trim() === 'PONG', 'a cluster node answering');
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 60_000 });
    for (const port of ports) await waitFor(async () => (await cli(port, 'cluster', 'info')).stdout.includes('cluster_state:ok'), 'cluster_state:ok on every node');
    return { nodes: ports.map((p) => `127.0.0.1:${p}`).join(','), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`test cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
