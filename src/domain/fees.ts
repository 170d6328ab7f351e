/**
 * Trading fees, as pure functions. A trade pays `rate · quantity · price`,
 * exactly, where the rate is the market's maker or taker rate; a negative
 * maker rate is a rebate (the fee is negative and adds to the balance).
 */
import type { Dec } from './decimal.js';
import type { MarketParams } from './markets.js';

export type Liquidity = 'maker' | 'taker';

/** The rate a fill pays on this market. */
export function feeRate(market: Pick<MarketParams, 'makerFeeRate' | 'takerFeeRate'>, liquidity: Liquidity): Dec {
  return liquidity === 'maker' ? market.makerFeeRate : market.takerFeeRate;
}

/** The fee of one fill: rate · quantity · price, exact (a product of decimals rounds nothing). */
export function tradeFee(rate: Dec, quantity: Dec, price: Dec): Dec {
  return rate.times(quantity).times(price);
}
