/** The command-line progress line: drawn in place on a terminal, throttled, ended by the last step, and absent elsewhere. */
import { describe, expect, it } from 'vitest';
import { terminalProgress } from '../../src/cli/progress.js';

function capture(isTTY: boolean) {
  const written: string[] = [];
  return { out: { isTTY, write: (t: string) => written.push(t) }, written };
}

describe('terminalProgress', () => {
  it('rewrites one line at most every 100 ms, and ends it with the last step', () => {
    const { out, written } = capture(true);
    let clock = 0;
    const progress = terminalProgress('rebuild', out, () => clock);
    progress(1000, 100_000);
    clock = 50;
    progress(2000, 100_000); // too soon: skipped
    clock = 150;
    progress(3000, 100_000);
    clock = 160;
    progress(100_000, 100_000); // the last step is always drawn
    expect(written).toEqual([
      '\rrebuild: 1,000 / 100,000 accounts (1 %)',
      '\rrebuild: 3,000 / 100,000 accounts (3 %)',
      '\rrebuild: 100,000 / 100,000 accounts (100 %)\n',
    ]);
  });

  it('writes nothing when the output is not a terminal', () => {
    const { out, written } = capture(false);
    const progress = terminalProgress('reconcile', out);
    progress(5, 10);
    progress(10, 10);
    expect(written).toEqual([]);
  });
});
