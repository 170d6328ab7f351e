/** Real HTTP against a listening app (many sockets), for concurrency and fault tests. */
import type { App } from '../../src/http/app.js';
import { ADMIN_KEY, type Method } from './engine.js';

export async function listen(app: App): Promise<string> {
  return app.listen({ host: '127.0.0.1', port: 0 });
}

/** Real HTTP; authenticates with `key` (the admin key by default; null: no Authorization header). */
export async function send(
  base: string,
  method: Method,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
  key: string | null = ADMIN_KEY,
): Promise<{ status: number; body: any; ms: number }> {
  const started = performance.now();
  const headers: Record<string, string> = key === null ? {} : { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, ms: performance.now() - started };
}
