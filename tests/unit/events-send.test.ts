/**
 * GET /events' write to a consumer (routes/events.ts send()): it waits for a
 * full buffer to drain for up to EVENTS_STALL_MS, then drops the consumer;
 * what one consumer costs the engine's memory is its buffer's high-water
 * mark and one batch, however long it stalls.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { send } from '../../src/http/routes/events.js';

/** A consumer's socket: takes each chunk after `delayMs` (null: never, a consumer that stopped reading). */
function socket(delayMs: number | null): Writable {
  return new Writable({
    highWaterMark: 1024,
    write(_chunk, _encoding, callback) {
      if (delayMs !== null) setTimeout(callback, delayMs);
    },
  });
}

const batch = 'x'.repeat(4000);

describe('send() to an event stream consumer', () => {
  it('returns at once while the buffer has room', async () => {
    const s = socket(0);
    expect(await send(s, 'id: 1\n\n', 1000, new AbortController().signal)).toBe(true);
  });

  it('waits for a full buffer to drain, then goes on', async () => {
    const s = socket(50);
    const started = performance.now();
    expect(await send(s, batch, 1000, new AbortController().signal)).toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(40);
    expect(s.destroyed).toBe(false);
  });

  it('drops a consumer that stops reading after the stall time, holding one batch meanwhile', async () => {
    const stalled = socket(null);
    const started = performance.now();
    const first = send(stalled, batch, 200, new AbortController().signal);
    // Held meanwhile: the batch (4,000 bytes on a 1,024-byte mark); the route sends nothing more until this settles.
    expect(stalled.writableLength).toBeLessThanOrEqual(1024 + batch.length);
    expect(await first).toBe(false);
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(190);
    expect(waited).toBeLessThan(1000);
    expect(stalled.destroyed).toBe(true);
  });

  it('stops waiting when the stream is aborted (client gone, shutdown)', async () => {
    const s = socket(null);
    const abort = new AbortController();
    const pending = send(s, batch, 60_000, abort.signal);
    abort.abort();
    expect(await pending).toBe(false);
    expect(s.destroyed).toBe(true);
  });
});
