import { describe, expect, it } from 'vitest';
import { Batcher } from '../../src/store/batcher.js';

/** A run function whose batches the test answers by hand. */
function manual() {
  const batches: { reqs: number[]; answer: (r: string[]) => void; fail: (e: Error) => void }[] = [];
  const run = (reqs: number[]) =>
    new Promise<string[]>((answer, fail) => {
      batches.push({ reqs, answer, fail });
    });
  return { batches, run };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('Batcher', () => {
  it('sends calls made in the same tick as one batch, and answers each with its own result', async () => {
    const { batches, run } = manual();
    const b = new Batcher(run);
    const replies = [b.call(1), b.call(2), b.call(3)];
    await tick();
    expect(batches.map((x) => x.reqs)).toEqual([[1, 2, 3]]);
    batches[0]!.answer(['one', 'two', 'three']);
    expect(await Promise.all(replies)).toEqual(['one', 'two', 'three']);
  });

  it('holds calls made while a batch is in flight and sends them together when it returns', async () => {
    const { batches, run } = manual();
    const b = new Batcher(run);
    const first = b.call(1);
    await tick();
    const later = [b.call(2), b.call(3)];
    await tick();
    expect(batches).toHaveLength(1); // still waiting for the first
    batches[0]!.answer(['a']);
    expect(await first).toBe('a');
    await tick();
    expect(batches.map((x) => x.reqs)).toEqual([[1], [2, 3]]);
    batches[1]!.answer(['b', 'c']);
    expect(await Promise.all(later)).toEqual(['b', 'c']);
  });

  it('fails every call of a failed batch, and the next batch still goes out', async () => {
    const { batches, run } = manual();
    const b = new Batcher(run);
    const failed = [b.call(1), b.call(2)];
    await tick();
    batches[0]!.fail(new Error('redis down'));
    for (const p of failed) await expect(p).rejects.toThrow('redis down');
    const next = b.call(3);
    await tick();
    batches[1]!.answer(['ok']);
    expect(await next).toBe('ok');
  });

  it('fails the batch when the answer does not have one result per call', async () => {
    const { batches, run } = manual();
    const b = new Batcher(run);
    const calls = [b.call(1), b.call(2)];
    await tick();
    batches[0]!.answer(['only one']);
    for (const p of calls) await expect(p).rejects.toThrow('a batch of 2 got 1 results');
  });

  it('caps a batch at its maximum size', async () => {
    const { batches, run } = manual();
    const b = new Batcher(run, 2);
    const calls = [1, 2, 3, 4, 5].map((n) => b.call(n));
    await tick();
    batches[0]!.answer(['1', '2']);
    await tick();
    batches[1]!.answer(['3', '4']);
    await tick();
    batches[2]!.answer(['5']);
    expect(await Promise.all(calls)).toEqual(['1', '2', '3', '4', '5']);
    expect(batches.map((x) => x.reqs)).toEqual([[1, 2], [3, 4], [5]]);
  });
});
