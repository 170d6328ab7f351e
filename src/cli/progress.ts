/**
 * Progress of a long command (`rebuild`, `reconcile` on a large book) on a
 * terminal: one line rewritten in place, at most ten times a second, and
 * nothing at all when the output is not a terminal (a log file or a pipe
 * gets only the result).
 */
export interface ProgressOutput {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

const EVERY_MS = 100;

/** A callback for `(done, total)` that draws `label: done / total accounts (n %)`; the last call ends the line. */
export function terminalProgress(label: string, out: ProgressOutput = process.stderr, now: () => number = () => performance.now()): (done: number, total: number) => void {
  if (!out.isTTY) return () => undefined;
  let last = Number.NEGATIVE_INFINITY;
  return (done, total) => {
    const finished = done >= total;
    if (!finished && now() - last < EVERY_MS) return;
    last = now();
    // Integer percent of a count, not money.
    const pct = total === 0 ? 100 : Math.floor((done * 100) / total);
    out.write(`\r${label}: ${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} accounts (${pct} %)${finished ? '\n' : ''}`);
  };
}
