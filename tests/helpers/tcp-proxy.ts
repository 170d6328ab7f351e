/**
 * A TCP proxy of the test's own, on loopback, between the engine and Redis or
 * PostgreSQL: `cut()` drops every connection and refuses new ones, `blackhole()`
 * keeps sockets open but forwards nothing (a hung network), `delay(ms)` holds
 * every chunk back that long each way (a slow network), `restore()` heals.
 */
import net from 'node:net';

type Mode = 'pass' | 'refuse' | 'blackhole';

export class TcpProxy {
  private server: net.Server | null = null;
  private port = 0;
  private mode: Mode = 'pass';
  private delayMs = 0;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket | null }>();

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** The port the proxy listens on (0 before start()). */
  get listeningPort(): number {
    return this.port;
  }

  async start(): Promise<number> {
    await this.listen();
    return this.port;
  }

  private async listen(): Promise<void> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    const pair: { client: net.Socket; upstream: net.Socket | null } = { client, upstream: null };
    this.pairs.add(pair);
    client.on('close', () => {
      pair.upstream?.destroy();
      this.pairs.delete(pair);
    });
    if (this.mode === 'blackhole') return; // accepted, never answered
    const upstream = net.connect(this.targetPort, this.targetHost);
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    // Forward by hand so a blackhole can swallow bytes on live connections too.
    client.on('data', (chunk) => this.forward(chunk, upstream));
    upstream.on('data', (chunk) => this.forward(chunk, client));
  }

  /** Chunks held back per destination socket, in order: a chunk never overtakes an earlier one. */
  private readonly held = new WeakMap<net.Socket, { at: number; chunk: Buffer }[]>();

  private forward(chunk: Buffer, to: net.Socket): void {
    if (this.mode !== 'pass') return;
    let queue = this.held.get(to);
    if (!queue) this.held.set(to, (queue = []));
    if (this.delayMs === 0 && queue.length === 0) {
      to.write(chunk);
      return;
    }
    queue.push({ at: performance.now() + this.delayMs, chunk });
    if (queue.length === 1) this.release(to, queue);
  }

  private release(to: net.Socket, queue: { at: number; chunk: Buffer }[]): void {
    const head = queue[0];
    if (!head) return;
    setTimeout(
      () => {
        while (queue.length > 0 && queue[0]!.at <= performance.now() + 1) {
          const { chunk } = queue.shift()!;
          if (this.mode === 'pass') to.write(chunk);
        }
        this.release(to, queue);
      },
      Math.max(0, head.at - performance.now()),
    );
  }

  /** Every chunk, either way, is forwarded `ms` late (0: at once). */
  delay(ms: number): void {
    this.delayMs = ms;
  }

  /** Drops every connection and stops listening, so new ones are refused (ECONNREFUSED), as when a server is down. */
  cut(): void {
    this.mode = 'refuse';
    this.destroyAll();
    this.server?.close();
    this.server = null;
  }

  /** Connections stay open but nothing gets through, either way. */
  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** Heals: connections that were blackholed are closed (their bytes are lost) so clients reconnect. */
  async restore(): Promise<void> {
    const was = this.mode;
    this.mode = 'pass';
    this.delayMs = 0;
    if (was === 'blackhole') this.destroyAll();
    if (was === 'refuse') await this.listen();
  }

  private destroyAll(): void {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream?.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.destroyAll();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Rewrites a URL's host and port to go through a proxy on 127.0.0.1:port. */
export function viaProxy(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

export function targetOf(url: string, defaultPort: number): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : defaultPort };
}
