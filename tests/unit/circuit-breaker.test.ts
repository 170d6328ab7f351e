/**
 * The circuit breaker's timing and states, on vitest's fake clock: when it
 * opens, when it probes, what closes it, and that stop() ends the probing.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker } from '../../src/store/circuit-breaker.js';

const INTERVAL = 100;
const TIMEOUT = 800;

/** A probe whose answers the test decides: each call takes the next behaviour ('ok', 'fail' or 'hang'; the last one repeats). */
function scriptedProbe(...answers: ('ok' | 'fail' | 'hang')[]) {
  const calls: number[] = [];
  const probe = vi.fn(() => {
    calls.push(Date.now());
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    if (answer === 'ok') return Promise.resolve();
    if (answer === 'fail') return Promise.reject(new Error('ECONNREFUSED'));
    return new Promise<void>(() => {});
  });
  return { probe, calls };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('circuit breaker', () => {
  it('starts closed and does not probe until tripped', async () => {
    const { probe } = scriptedProbe('ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    expect(breaker.open).toBe(false);
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(probe).not.toHaveBeenCalled();
  });

  it('opens at trip(), probes one interval later, and closes when the probe answers', async () => {
    const { probe, calls } = scriptedProbe('ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    expect(breaker.open).toBe(true);
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(probe).not.toHaveBeenCalled();
    expect(breaker.open).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toEqual([INTERVAL]);
    expect(breaker.open).toBe(false);
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(probe).toHaveBeenCalledTimes(1); // closed: no more probes
  });

  it('stays open while probes fail, probing every interval, and closes at the first that answers', async () => {
    const { probe, calls } = scriptedProbe('fail', 'fail', 'ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    await vi.advanceTimersByTimeAsync(2 * INTERVAL);
    expect(calls).toEqual([INTERVAL, 2 * INTERVAL]);
    expect(breaker.open).toBe(true);
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(calls).toEqual([INTERVAL, 2 * INTERVAL, 3 * INTERVAL]);
    expect(breaker.open).toBe(false);
  });

  it('counts a probe slower than probeTimeoutMs as failed and probes again an interval after it timed out', async () => {
    const { probe, calls } = scriptedProbe('hang', 'ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    await vi.advanceTimersByTimeAsync(INTERVAL + TIMEOUT - 1);
    expect(calls).toEqual([INTERVAL]);
    expect(breaker.open).toBe(true);
    await vi.advanceTimersByTimeAsync(1 + INTERVAL);
    expect(calls).toEqual([INTERVAL, INTERVAL + TIMEOUT + INTERVAL]);
    expect(breaker.open).toBe(false);
  });

  it('runs one probe loop however often it is tripped while open', async () => {
    const { probe } = scriptedProbe('fail');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    await vi.advanceTimersByTimeAsync(INTERVAL / 2);
    breaker.trip();
    breaker.trip();
    await vi.advanceTimersByTimeAsync(5 * INTERVAL - INTERVAL / 2);
    expect(probe).toHaveBeenCalledTimes(5);
    expect(breaker.open).toBe(true);
  });

  it('opens again when tripped after it closed, and probes again', async () => {
    const { probe } = scriptedProbe('ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(breaker.open).toBe(false);
    breaker.trip();
    expect(breaker.open).toBe(true);
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(probe).toHaveBeenCalledTimes(2);
    expect(breaker.open).toBe(false);
  });

  it('stop() ends the probing after the round under way and leaves an open breaker open', async () => {
    const { probe } = scriptedProbe('fail');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    breaker.trip();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(probe).toHaveBeenCalledTimes(1);
    let stopped = false;
    const stopping = breaker.stop().then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(INTERVAL);
    await stopping;
    expect(stopped).toBe(true);
    expect(probe).toHaveBeenCalledTimes(2); // the round that was sleeping when stop() came still probed
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(probe).toHaveBeenCalledTimes(2);
    expect(breaker.open).toBe(true);
    // Tripped after stop(): open, and nothing probes.
    breaker.trip();
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(probe).toHaveBeenCalledTimes(2);
    expect(breaker.open).toBe(true);
  });

  it('stop() with no probe under way resolves at once', async () => {
    const { probe } = scriptedProbe('ok');
    const breaker = new CircuitBreaker({ probe, probeIntervalMs: INTERVAL, probeTimeoutMs: TIMEOUT });
    await breaker.stop();
    expect(breaker.open).toBe(false);
    expect(probe).not.toHaveBeenCalled();
  });
});
