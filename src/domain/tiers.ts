/**
 * Tiered margin: a position's initial and maintenance margin as a function
 * of its notional N. In tier n (the first whose `maxNotional` ≥ N),
 * MM = N·mmr_n − mma_n with mma_1 = 0 and
 * mma_n = mma_{n−1} + maxNotional_{n−1}·(mmr_n − mmr_{n−1}); IM likewise with
 * the initial rates. The amounts make margin continuous in N (and, the rates
 * never falling, convex). One tier with no bound is the flat rates of the
 * accounting rules: MM = N·mmr exactly.
 */
import { type Dec, ZERO } from './decimal.js';
import type { MarginTier } from './markets.js';
import { remember } from './remember.js';

/** A tier with its cumulative amounts. */
export interface TierBand {
  readonly maxNotional: Dec | null;
  readonly imr: Dec;
  readonly mmr: Dec;
  /** Cumulative initial amount (ima_n). */
  readonly ima: Dec;
  /** Cumulative maintenance amount (mma_n). */
  readonly mma: Dec;
}

const BANDS = Symbol('bands');

/** The tiers with their cumulative amounts, computed once per tier list (the lists are immutable). */
export function bandsOf(tiers: readonly MarginTier[]): readonly TierBand[] {
  const known = (tiers as { [BANDS]?: readonly TierBand[] })[BANDS];
  if (known !== undefined) return known;
  const bands: TierBand[] = [];
  let ima = ZERO;
  let mma = ZERO;
  for (const [i, t] of tiers.entries()) {
    const prev = tiers[i - 1];
    if (prev !== undefined) {
      const bound = prev.maxNotional!;
      ima = ima.plus(bound.times(t.initialMarginRate.minus(prev.initialMarginRate)));
      mma = mma.plus(bound.times(t.maintenanceMarginRate.minus(prev.maintenanceMarginRate)));
    }
    bands.push({ maxNotional: t.maxNotional, imr: t.initialMarginRate, mmr: t.maintenanceMarginRate, ima, mma });
  }
  return remember(tiers, BANDS, bands);
}

/** The index (0-based) of the tier a notional falls in: the first whose bound is at least N. */
export function tierIndex(bands: readonly TierBand[], notional: Dec): number {
  for (let i = 0; i < bands.length - 1; i++) {
    if (bands[i]!.maxNotional!.gte(notional)) return i;
  }
  return bands.length - 1;
}

export interface TierMargin {
  /** 1-based, as shown to users. */
  readonly tier: number;
  readonly initialMargin: Dec;
  readonly maintenanceMargin: Dec;
}

/** A position's margins at notional N. */
export function tierMargin(bands: readonly TierBand[], notional: Dec): TierMargin {
  // One tier (the default): no amounts to take off.
  if (bands.length === 1) return { tier: 1, initialMargin: notional.times(bands[0]!.imr), maintenanceMargin: notional.times(bands[0]!.mmr) };
  const i = tierIndex(bands, notional);
  const b = bands[i]!;
  return { tier: i + 1, initialMargin: notional.times(b.imr).minus(b.ima), maintenanceMargin: notional.times(b.mmr).minus(b.mma) };
}

/** Maintenance margin alone at notional N. */
export function maintenanceAt(bands: readonly TierBand[], notional: Dec): Dec {
  const b = bands[tierIndex(bands, notional)]!;
  return notional.times(b.mmr).minus(b.mma);
}
