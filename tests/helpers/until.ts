/**
 * Polling a condition with a deadline, instead of sleeping for a time tuned
 * to some timer of the engine (a heartbeat, a recovery pass): the test goes on
 * as soon as the condition holds, and fails naming it if it never does.
 */

export interface UntilOptions<T> {
  /** When the probed value is good enough (default: truthy). */
  readonly ok?: (value: T) => boolean;
  /** Deadline, from the first probe (default 10 s). */
  readonly timeoutMs?: number;
  /** Pause between probes (default 50 ms). */
  readonly everyMs?: number;
  /** Named in the error when the deadline passes. */
  readonly what?: string;
}

/** Probes until `ok` holds for the probed value and returns that value; throws once `timeoutMs` has passed. */
export async function until<T>(probe: () => T | Promise<T>, options: UntilOptions<T> = {}): Promise<T> {
  const { ok = Boolean, timeoutMs = 10_000, everyMs = 50, what = 'the condition' } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (performance.now() >= deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms; last seen: ${describe(value)}`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(value: unknown): string {
  try {
    return (JSON.stringify(value) ?? String(value)).slice(0, 300);
  } catch {
    return String(value);
  }
}
