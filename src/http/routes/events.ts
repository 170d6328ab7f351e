/**
 * GET /events: Server-Sent Events (see services/events.ts). The stream is
 * written straight to the socket (the reply is hijacked once the key and the
 * query are checked), so errors before it starts are the usual JSON answers.
 */
import type { Writable } from 'node:stream';
import { EngineError } from '../../domain/errors.js';
import { EVENT_TYPES, type EventFilter, type EventType } from '../../services/events.js';
import { parsePosition } from '../../store/events.js';
import { READERS } from '../auth.js';
import { errorResponse, eventsHeaders, eventsQuery } from '../schemas.js';
import type { RoutePlugin } from './types.js';

/** A comment line now and then keeps proxies and clients from timing an idle stream out. */
const KEEP_ALIVE_MS = 15_000;

export const eventRoutes: RoutePlugin = async (app, { engine }) => {
  const streams = new Set<AbortController>();
  // Streams never end by themselves: close them first, or closing the server waits for them.
  app.addHook('preClose', (done) => {
    for (const s of streams) s.abort();
    done();
  });

  app.get(
    '/events',
    {
      config: { access: { roles: [...READERS, 'account'], account: 'public' } },
      schema: {
        tags: ['operations'],
        summary: 'Live events (Server-Sent Events): trades, liquidations, margin calls, marks, market changes',
        description:
          'Each event has an increasing id; send it back as Last-Event-ID to resume after it without loss. An account key sees its own accounts\' trades, liquidations and margin calls (and market-wide events).',
        querystring: eventsQuery,
        headers: eventsHeaders,
        response: { 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async (req, reply) => {
      const principal = req.principal;
      let accounts: ReadonlySet<number> | null = req.query.account_id === undefined ? null : new Set([req.query.account_id]);
      if (principal?.role === 'account') {
        if (req.query.account_id !== undefined && !principal.accountIds.has(req.query.account_id)) {
          throw new EngineError('FORBIDDEN', `account ${req.query.account_id} is not one of this key's accounts`);
        }
        accounts ??= principal.accountIds;
      }
      const types = req.query.types === undefined ? null : new Set(req.query.types.split(',') as EventType[]);
      const filter: EventFilter = { types: types?.size === EVENT_TYPES.length ? null : types, accounts };
      const lastId = req.headers['last-event-id'];
      // Fixed before the answer starts: every event committed after the client sees the 200 is in its stream.
      const from = lastId === undefined ? await engine.events.now() : parsePosition(lastId)!;

      const abort = new AbortController();
      streams.add(abort);
      reply.hijack();
      const res = reply.raw;
      // The connection ends with the stream (Connection: close), so a server
      // closing does not wait for it to idle out as a keep-alive connection.
      res.shouldKeepAlive = false;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
      });
      // Tell EventSource clients how soon to come back after a drop.
      res.write('retry: 1000\n\n');
      res.on('close', () => abort.abort());
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
      try {
        for await (const batch of engine.events.subscribe(from, filter, abort.signal)) {
          if (!(await send(res, batch.map((e) => e.text).join(''), engine.config.eventsStallMs, abort.signal))) break;
        }
      } catch (error) {
        req.log.warn({ err: error }, 'event stream ended by an error; the client resumes with Last-Event-ID');
      } finally {
        clearInterval(keepAlive);
        streams.delete(abort);
        res.end();
      }
    },
  );
};

/**
 * Writes to the socket; when its buffer is full, waits for it to drain for
 * up to `stallMs`. False: the consumer stopped reading (or left), and is
 * dropped rather than buffered for without bound. Nothing more is written
 * to it while this waits, so a stream holds at most its buffer's high-water
 * mark and one batch (a page of events) beyond what the kernel holds.
 */
export async function send(res: Writable, text: string, stallMs: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (res.write(text)) return true;
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off('drain', drained);
      signal.removeEventListener('abort', aborted);
      if (!ok) res.destroy();
      resolve(ok);
    };
    const drained = () => done(true);
    const aborted = () => done(false);
    const timer = setTimeout(() => done(false), stallMs);
    res.on('drain', drained);
    signal.addEventListener('abort', aborted, { once: true });
  });
}
