/**
 * JSON bodies without binary floating point: a number literal that a double
 * cannot hold exactly (0.123456789012345678, say) is kept as its decimal text,
 * so `{"quantity": 0.1}` and `{"quantity": "0.1"}` mean the same exact value.
 *
 * And without duplicate keys: `{"account_id": 1, "account_id": 2}` is refused
 * (400 VALIDATION_ERROR naming the key), at every nesting level, whichever
 * parser took the body. JSON.parse keeps the last value and lossless-json
 * keeps one of two equal values silently, so neither can be trusted to say.
 */
import type { FastifyInstance } from 'fastify';
import { isSafeNumber, parse } from 'lossless-json';

function parseNumber(text: string): number | string {
  return isSafeNumber(text) ? Number(text) : text;
}

/** A body the parser refuses; `field` and `reason` fill the error's details.fields entry. */
export class MalformedJson extends Error {
  constructor(
    message: string,
    readonly field: string = 'body',
    readonly reason: string = message,
  ) {
    super(message);
  }
}

/** A body with an object that names one key twice (after decoding escapes). */
export class DuplicateKey extends MalformedJson {
  constructor(readonly key: string, readonly path: readonly (string | number)[]) {
    super(`duplicate key "${key}" in the JSON body`, ['body', ...path].join('.'), 'is given more than once');
  }
}

/**
 * Parses a request body: a JSON value, numbers exact (see above), no object
 * with a repeated key. Throws MalformedJson (DuplicateKey for a repeated key).
 * Error messages may hold client text at any length: clip them before echoing.
 *
 * Every body gets one cheap pass over its text first (survey, below), which
 * tells the parser to use and how many object members the text writes; a
 * parsed object keeps one property per distinct key, so the members and the
 * parsed keys agree exactly when no object repeats a key. Only a body that
 * fails that check pays for the scanner that names the key.
 */
export function parseJson(text: string): unknown {
  const surveyed = survey(text);
  const members = surveyed >>> 1;
  let value: unknown;
  if ((surveyed & LONG_NUMBER) !== 0) {
    try {
      value = parse(text, null, parseNumber);
    } catch (error) {
      // lossless-json refuses a repeated key only when the values differ;
      // name it the same way as every other duplicate.
      const duplicate = (error as Error).message.startsWith('Duplicate key') ? findDuplicateKey(text) : null;
      if (duplicate) throw new DuplicateKey(duplicate.key, duplicate.path);
      throw new MalformedJson(`malformed JSON: ${(error as Error).message}`);
    }
  } else {
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new MalformedJson(`malformed JSON: ${(error as Error).message}`);
    }
  }
  // (A top-level string, number, boolean or null writes no member.)
  if (typeof value === 'object' && value !== null && countKeys(value) !== members) {
    const duplicate = findDuplicateKey(text);
    if (duplicate) throw new DuplicateKey(duplicate.key, duplicate.path);
    throw new MalformedJson('malformed JSON: object members do not match their keys'); // unreachable for well-formed JSON
  }
  return value;
}

const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const COLON = 0x3a; // :
const COMMA = 0x2c; // ,
const OPEN_OBJECT = 0x7b; // {
const CLOSE_OBJECT = 0x7d; // }
const OPEN_ARRAY = 0x5b; // [
const CLOSE_ARRAY = 0x5d; // ]

/**
 * A number literal of at most 15 significant digits survives a double
 * exactly (its shortest round-trip form is the same decimal), so a body with
 * no run of 16 or more number characters outside strings can take the native
 * parser, several times faster; anything longer goes through lossless-json.
 */
const LONG_RUN = 16;
/** survey()'s flag bit: the text has a long number literal. */
const LONG_NUMBER = 1;

/**
 * One pass over the text: the object members it writes (in well-formed JSON
 * each ':' outside a string separates exactly one member) and whether a run
 * of LONG_RUN or more number characters stands outside strings. Packed as
 * members * 2 + LONG_NUMBER flag, so the hot path allocates nothing. Bounded
 * by the text's length whatever the text is.
 */
function survey(text: string): number {
  let members = 0;
  let run = 0;
  let long = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = closingQuote(text, i);
      run = 0;
    } else if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x2b || c === 0x65 || c === 0x45) {
      // 0-9 . - + e E
      if (++run >= LONG_RUN) long = LONG_NUMBER;
    } else {
      if (c === COLON) members++;
      run = 0;
    }
  }
  return members * 2 + long;
}

/**
 * The index of the quote that closes the string opened at `open` (the
 * text's length if none does). indexOf does the scanning, several times
 * faster than a loop over a long string; a quote after an odd run of
 * backslashes is escaped. Each backslash is looked at once at most.
 */
function closingQuote(text: string, open: number): number {
  let end = text.indexOf('"', open + 1);
  while (end !== -1 && text.charCodeAt(end - 1) === BACKSLASH) {
    let before = end - 2;
    while (text.charCodeAt(before) === BACKSLASH) before--;
    if ((end - 1 - before) % 2 === 0) break;
    end = text.indexOf('"', end + 1);
  }
  return end === -1 ? text.length : end;
}

/** Object members written in `text` (well-formed JSON): the ':' characters outside strings. */
export function countMembers(text: string): number {
  return survey(text) >>> 1;
}

/** Whether `text` writes a number literal of LONG_RUN or more characters (and so goes through lossless-json). */
export function hasLongNumber(text: string): boolean {
  return (survey(text) & LONG_NUMBER) !== 0;
}

/** Own keys of every object in a parsed JSON value (iterative: a deeply nested body cannot overflow the stack). */
export function countKeys(root: object): number {
  let keys = 0;
  const pending: object[] = [root];
  while (pending.length > 0) {
    const value = pending.pop()!;
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'object' && item !== null) pending.push(item as object);
    } else {
      for (const key in value) {
        keys++;
        const member = (value as Record<string, unknown>)[key];
        if (typeof member === 'object' && member !== null) pending.push(member);
      }
    }
  }
  return keys;
}

interface ObjectFrame {
  readonly keys: Set<string>;
  /** The key of the member being read (the path segment of a nested value). */
  key: string;
}
interface ArrayFrame {
  readonly keys: null;
  /** The index of the element being read. */
  index: number;
}

/**
 * The first repeated key in `text` and where it is (the path of the object
 * that repeats it, then the key), or null. Keys are compared as decoded text,
 * so "a" and "\u0061" are the same key; sibling objects have separate key
 * sets. Meant for well-formed JSON; on malformed text it still ends (one pass,
 * nothing recursive) and reports what it saw.
 */
export function findDuplicateKey(text: string): { key: string; path: (string | number)[] } | null {
  const stack: (ObjectFrame | ArrayFrame)[] = [];
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === OPEN_OBJECT) {
      stack.push({ keys: new Set(), key: '' });
    } else if (c === OPEN_ARRAY) {
      stack.push({ keys: null, index: 0 });
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      stack.pop();
    } else if (c === COMMA) {
      const top = stack[stack.length - 1];
      if (top && top.keys === null) top.index++;
    } else if (c === QUOTE) {
      const start = i;
      i = closingQuote(text, start);
      const top = stack[stack.length - 1];
      // A string is a key when it sits in an object and a ':' follows it.
      if (!top || top.keys === null || nextSignificant(text, i + 1) !== COLON) continue;
      const raw = text.slice(start + 1, i);
      const key = raw.includes('\\') ? decodeString(text.slice(start, i + 1)) : raw;
      if (top.keys.has(key)) {
        const path = stack.slice(0, -1).map((frame) => (frame.keys === null ? frame.index : frame.key));
        return { key, path: [...path, key] };
      }
      top.keys.add(key);
      top.key = key;
    }
  }
  return null;
}

function nextSignificant(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return -1;
}

/** A quoted JSON string with escapes, decoded (as written, if it is not a valid string literal). */
function decodeString(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return quoted.slice(1, -1);
  }
}

export function registerJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (text.trim() === '') {
      done(new MalformedJson('request body is empty; send a JSON object'), undefined);
      return;
    }
    try {
      done(null, parseJson(text));
    } catch (error) {
      done(error instanceof MalformedJson ? error : new MalformedJson(`malformed JSON: ${(error as Error).message}`), undefined);
    }
  });
}
