/**
 * The layout of Redis's marks hash: the marks, beside what the hot path needs
 * of each market, under one key so a trade reads them all at one epoch.
 *
 *   <symbol>    the mark price          #<symbol>  its version
 *   $<symbol>   the market (JSON)       %<symbol>  its version
 *   #epoch      bumped by every change  #boot      set last by a rebuild
 *
 * The Lua scripts get these names from here (see scripts.ts), so each is
 * written once.
 */

/** Bumped by every change to a mark or a market: a reader that cached the hash at an epoch re-reads only past it. */
export const EPOCH_FIELD = '#epoch';
/** Set last by a rebuild: its absence means Redis lost the engine's state. */
export const BOOT_FIELD = '#boot';
/** Prefix of a mark's version field. */
export const MARK_VERSION_PREFIX = '#';
/** Prefix of a market definition's field (JSON). */
export const MARKET_PREFIX = '$';
/** Prefix of a market definition's version field. */
export const MARKET_VERSION_PREFIX = '%';

export const marketField = (symbol: string) => MARKET_PREFIX + symbol;

const HASH = MARK_VERSION_PREFIX.charCodeAt(0);
const DOLLAR = MARKET_PREFIX.charCodeAt(0);
const PERCENT = MARKET_VERSION_PREFIX.charCodeAt(0);

/** Whether a field of the marks hash is a mark (its other fields are versions, markets and markers). */
export const isMarkField = (field: string) => {
  const c = field.charCodeAt(0);
  return c !== HASH && c !== DOLLAR && c !== PERCENT;
};

/** The symbol of a market definition's field, or null for any other field. */
export const marketSymbolOf = (field: string): string | null => (field.charCodeAt(0) === DOLLAR ? field.slice(1) : null);

export const markVersionField = (symbol: string) => MARK_VERSION_PREFIX + symbol;
export const marketVersionField = (symbol: string) => MARKET_VERSION_PREFIX + symbol;
