/**
 * Funding payments, as pure functions. At a funding event with rate r and
 * mark m, an account holding the signed quantity q pays q · m · r: with
 * r > 0 longs pay and shorts receive, with r < 0 the reverse. Exact: a
 * product of decimals rounds nothing.
 */
import { type Dec, ZERO } from './decimal.js';

/** What the holder pays (negative: what it receives): q · m · r. */
export function fundingPayment(quantity: Dec, mark: Dec, rate: Dec): Dec {
  return quantity.times(mark).times(rate);
}

/** The change to the holder's balance: the payment's opposite. */
export function fundingDelta(quantity: Dec, mark: Dec, rate: Dec): Dec {
  const delta = fundingPayment(quantity, mark, rate).neg();
  return delta.isZero() ? ZERO : delta;
}

export interface FundingTotals {
  /** Holders charged (one ledger row each). */
  readonly accounts: number;
  /** Total paid by the payers, ≥ 0. */
  readonly paid: Dec;
  /** Total received by the receivers, ≥ 0. */
  readonly received: Dec;
}

/** Totals of a funding event from its rows' balance changes (negative: paid, positive: received). */
export function fundingTotals(deltas: Iterable<Dec>): FundingTotals {
  let accounts = 0;
  let paid = ZERO;
  let received = ZERO;
  for (const d of deltas) {
    accounts++;
    if (d.isNeg() && !d.isZero()) paid = paid.minus(d);
    else received = received.plus(d);
  }
  return { accounts, paid, received };
}

/** A funding rate must satisfy |rate| < 1. */
export const validFundingRate = (rate: Dec): boolean => rate.abs().lt(1);
