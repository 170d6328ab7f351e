/**
 * A circuit breaker: after a dependency failed (a connection error, a call
 * that hung), callers fail at once, nothing sent, until a probe answers, so
 * an outage costs them milliseconds, not timeouts.
 */
import { withTimeout } from '../lib/timeout.js';

export interface CircuitBreakerOptions {
  /** One cheap call to the dependency; it is back when this resolves. */
  readonly probe: () => Promise<unknown>;
  /** Pause before each probe. */
  readonly probeIntervalMs: number;
  /** A probe slower than this counts as failed. */
  readonly probeTimeoutMs: number;
}

export class CircuitBreaker {
  private tripped = false;
  private probing: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly options: CircuitBreakerOptions) {}

  /** True from trip() until a probe answers: fail fast. */
  get open(): boolean {
    return this.tripped;
  }

  /** The dependency failed: opens the breaker and probes until it answers (one probe loop at a time). */
  trip(): void {
    this.tripped = true;
    this.probing ??= this.probeUntilBack();
  }

  /** Ends the probing after the round under way (if any) and resolves once it has; an open breaker stays open. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.probing;
  }

  private async probeUntilBack(): Promise<void> {
    try {
      while (this.tripped && !this.stopped) {
        await new Promise((r) => setTimeout(r, this.options.probeIntervalMs));
        try {
          await withTimeout(this.options.probe(), this.options.probeTimeoutMs, 'probe');
          this.tripped = false;
        } catch {
          // still down
        }
      }
    } finally {
      this.probing = null;
    }
  }
}
