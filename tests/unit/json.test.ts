/**
 * The request body parser: exact numbers, and no object that repeats a key
 * (compared as decoded text), at any depth, whichever parser takes the body.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { clip } from '../../src/http/errors.js';
import { countKeys, countMembers, DuplicateKey, findDuplicateKey, hasLongNumber, MalformedJson, parseJson } from '../../src/http/json.js';

/** parseJson's DuplicateKey for `text` (fails the test if it parses or fails otherwise). */
function duplicateIn(text: string): DuplicateKey {
  let caught: unknown;
  try {
    parseJson(text);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DuplicateKey);
  return caught as DuplicateKey;
}

describe('findDuplicateKey', () => {
  it.each<[string, string, string, (string | number)[]]>([
    ['a top-level repeat', '{"a":1,"a":2}', 'a', ['a']],
    ['a repeat with equal values', '{"a":1,"b":2,"a":1}', 'a', ['a']],
    ['a repeat in a nested object', '{"a":{"x":1,"y":2,"x":3}}', 'x', ['a', 'x']],
    ['a repeat in an object inside an array', '{"list":[{"k":1},{"k":2,"k":3}]}', 'k', ['list', 1, 'k']],
    ['a repeat in a top-level array of objects', '[{"a":1},{"b":1},{"c":1,"c":2}]', 'c', [2, 'c']],
    ['an escaped spelling of the same key', '{"a":1,"\\u0061":2}', 'a', ['a']],
    ['two different escapes of one key', '{"\\u00e9":1,"\\u00E9":2}', 'é', ['é']],
    ['an escaped quote in a key', '{"a\\"b":1,"a\\u0022b":2}', 'a"b', ['a"b']],
    ['whitespace around the colon', '{ "a" : 1 ,\n\t"a"\r\n:\n2 }', 'a', ['a']],
    ['a repeat after a closed nested object', '{"a":{"a":1},"b":[],"a":2}', 'a', ['a']],
    ['the empty key', '{"":1,"":2}', '', ['']],
  ])('finds %s', (_name, text, key, path) => {
    expect(findDuplicateKey(text)).toEqual({ key, path });
  });

  it.each<[string, string]>([
    ['distinct keys', '{"account_id":1,"symbol":"BTC-PERP","side":"BUY","quantity":"0.1","price":"50000"}'],
    ['the same key in sibling objects', '{"x":{"a":1},"y":{"a":2}}'],
    ['the same key in objects of one array', '[{"a":1},{"a":2},{"a":3}]'],
    ['the same key in a parent and its child', '{"a":{"a":{"a":1}}}'],
    ['key-like text inside string values', '{"a":"\\"a\\":1","b":"{\\"a\\":2, \\"a\\":3}"}'],
    ['a value equal to a key', '{"a":"a","b":"a"}'],
    ['a string that is an array element followed by a colon-free value', '{"a":["a","a"],"b":1}'],
    ['keys differing only in case', '{"a":1,"A":2}'],
    ['a key and an escape that decodes to a different key', '{"a":1,"\\u0062":2}'],
    ['no objects at all', '[1,"a",true,null]'],
  ])('finds nothing in %s', (_name, text) => {
    expect(findDuplicateKey(text)).toBeNull();
  });

  it('handles deep nesting without recursion', () => {
    const depth = 20_000;
    const deep = `${'{"a":'.repeat(depth)}{"b":1,"b":2}${'}'.repeat(depth)}`;
    const found = findDuplicateKey(deep);
    expect(found?.key).toBe('b');
    expect(found?.path).toHaveLength(depth + 1);
    expect(findDuplicateKey(`${'['.repeat(depth)}{"b":1}${']'.repeat(depth)}`)).toBeNull();
  });

  it('ends on malformed text', () => {
    expect(findDuplicateKey('{"a":1,"a')).toBeNull();
    expect(findDuplicateKey('{"a":1,"a":')).toEqual({ key: 'a', path: ['a'] });
    expect(findDuplicateKey('}}]]{"a":"\\')).toBeNull();
    expect(findDuplicateKey('{"\\uZZZZ":1,"\\uZZZZ":2}')).toEqual({ key: '\\uZZZZ', path: ['\\uZZZZ'] });
  });
});

describe('countMembers and countKeys', () => {
  it('count one member per colon outside strings, and one key per parsed property', () => {
    const text = '{"a":"x:y","b":{"c":[{"d":1},{"e":"\\":"}]},"f":[]}';
    expect(countMembers(text)).toBe(6);
    expect(countKeys(JSON.parse(text) as object)).toBe(6);
  });

  it('disagree exactly when a key repeats', () => {
    const text = '{"a":1,"b":{"c":1,"c":2}}';
    expect(countMembers(text)).toBe(4);
    expect(countKeys(JSON.parse(text) as object)).toBe(3);
  });

  it('tell an escaped quote from a closing one after runs of backslashes', () => {
    // "\\" is one backslash, closed; "\\\"" is a backslash and a quote, still open until the next quote.
    const text = String.raw`{"a":"\\","b:":"\\\":","c":"x\"y:\\"}`;
    expect(JSON.parse(text)).toEqual({ a: '\\', 'b:': '\\":', c: 'x"y:\\' });
    expect(countMembers(text)).toBe(3);
    expect(findDuplicateKey(String.raw`{"a\\":1,"a\\":2}`)).toEqual({ key: 'a\\', path: ['a\\'] });
    expect(findDuplicateKey(String.raw`{"a\\":1,"a\\\"":2}`)).toBeNull();
  });

  it('skip long strings', () => {
    expect(countMembers(`{"a":"${'x:'.repeat(30_000)}","b":1}`)).toBe(2);
  });

  it('countKeys handles deep nesting without recursion', () => {
    const depth = 50_000;
    const value = JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`) as object;
    expect(countKeys(value)).toBe(depth);
  });
});

describe('hasLongNumber', () => {
  it.each<[string, boolean]>([
    ['{"amount": 0.123456789012345678}', true],
    ['{"account_id": 9007199254740993}', true],
    ['{"amount": 1234567890.12345}', true], // 16 characters
    ['{"amount": 1234567890.1234}', false], // 15 characters
    ['{"id": "12345678901234567890"}', false], // a string, not a number
    ['{"amount": -1.5e-10, "b": true}', false],
  ])('%s → %s', (text, long) => {
    expect(hasLongNumber(text)).toBe(long);
  });
});

describe('parseJson', () => {
  it('parses a trade body natively', () => {
    expect(parseJson('{"account_id":1,"symbol":"BTC-PERP","side":"BUY","quantity":0.1,"price":"50000"}')).toEqual({
      account_id: 1,
      symbol: 'BTC-PERP',
      side: 'BUY',
      quantity: 0.1,
      price: '50000',
    });
  });

  it('keeps a long number literal as its exact decimal text', () => {
    expect(parseJson('{"amount": 0.123456789012345678}')).toEqual({ amount: '0.123456789012345678' });
    expect(parseJson('{"a": [1, {"b": 9007199254740993}]}')).toEqual({ a: [1, { b: '9007199254740993' }] });
  });

  it('passes non-object JSON values through', () => {
    expect(parseJson('null')).toBeNull();
    expect(parseJson('"a:b"')).toBe('a:b');
    expect(parseJson('[1, "x:"]')).toEqual([1, 'x:']);
    expect(parseJson('1234567890123456789')).toBe('1234567890123456789');
  });

  it('accepts the same key in sibling objects and arrays of objects', () => {
    expect(parseJson('{"x":{"a":1},"y":[{"a":2},{"a":3}]}')).toEqual({ x: { a: 1 }, y: [{ a: 2 }, { a: 3 }] });
  });

  it('accepts key-like text inside values', () => {
    expect(parseJson('{"a":"\\"a\\": 1","b":"a"}')).toEqual({ a: '"a": 1', b: 'a' });
  });

  it('refuses a repeated key with the native parser (which would keep the last value)', () => {
    const error = duplicateIn('{"account_id":1,"symbol":"BTC-PERP","side":"BUY","quantity":"0.1","price":"50000","account_id":2}');
    expect(error.key).toBe('account_id');
    expect(error.field).toBe('body.account_id');
    expect(error.message).toBe('duplicate key "account_id" in the JSON body');
  });

  it('refuses a repeated key with lossless-json, equal values or not', () => {
    expect(duplicateIn('{"amount": 0.123456789012345678, "amount": 0.123456789012345678}').key).toBe('amount');
    expect(duplicateIn('{"amount": 0.123456789012345678, "amount": 5}').key).toBe('amount');
    expect(duplicateIn('{"amount": 5, "amount": 0.123456789012345678}').key).toBe('amount');
  });

  it('refuses repeats at every depth, by decoded key', () => {
    expect(duplicateIn('{"a":{"b":[{"c":1,"\\u0063":1}]}}').field).toBe('body.a.b.0.c');
    expect(duplicateIn('{"a":{"b":[{"c":1,"c":1}]},"n":0.123456789012345678}').field).toBe('body.a.b.0.c');
    expect(duplicateIn('{"__proto__":1,"__proto__":2}').key).toBe('__proto__');
  });

  it('refuses a repeat deep in a deeply nested body', () => {
    const depth = 5_000;
    expect(duplicateIn(`${'[{"a":'.repeat(depth)}{"b":1,"b":2}${'}]'.repeat(depth)}`).key).toBe('b');
  });

  it.each(['{"a":1,', '{"a" 1}', "{'a':1}", '{"a":1} x', '{"a":NaN}', '{"a":0.123456789012345678,}'])('refuses malformed %s as MalformedJson', (text) => {
    expect(() => parseJson(text)).toThrow(MalformedJson);
    try {
      parseJson(text);
    } catch (error) {
      expect(error).not.toBeInstanceOf(DuplicateKey);
      expect((error as MalformedJson).field).toBe('body');
      expect((error as Error).message).toMatch(/^malformed JSON: /);
    }
  });
});

describe('clip', () => {
  it('leaves short text alone and cuts long text to the limit, marked', () => {
    expect(clip('abc')).toBe('abc');
    expect(clip('x'.repeat(200))).toBe('x'.repeat(200));
    const cut = clip('x'.repeat(60_000));
    expect(cut).toHaveLength(200);
    expect(cut.endsWith('…')).toBe(true);
    expect(clip('abcdef', 4)).toBe('abc…');
  });

  it('does not split a surrogate pair', () => {
    const cut = clip(`${'x'.repeat(198)}😀😀😀`);
    expect(cut).toBe(`${'x'.repeat(198)}…`);
    expect(cut.length).toBeLessThanOrEqual(200);
  });
});

describe('parseJson on generated JSON', () => {
  it('parses what JSON.stringify writes (as JSON.parse does, without long numbers) and finds no duplicate', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        const parsed = parseJson(text); // lossless-json's too, when a number is long: no false duplicate either way
        if (!hasLongNumber(text)) expect(parsed).toEqual(JSON.parse(text));
        expect(findDuplicateKey(text)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  it('refuses an object given one member twice, wherever it is nested, naming that key', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 6 }),
        fc.nat(),
        fc.nat(),
        fc.constantFrom('%', '[%]', '{"w":%}', '[1,{"x":[%]}]', '{"v":{"%":1},"w":[{},%]}'),
        (object, pick, at, wrapper) => {
          const members = Object.entries(object).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
          const repeated = pick % members.length;
          const [key] = Object.entries(object)[repeated]!;
          const written = [...members];
          written.splice(at % (members.length + 1), 0, members[repeated]!);
          const text = wrapper.replace(/%(?!")/, () => `{${written.join(',')}}`);
          let caught: unknown;
          try {
            parseJson(text);
          } catch (error) {
            caught = error;
          }
          expect(caught).toBeInstanceOf(DuplicateKey);
          expect((caught as DuplicateKey).key).toBe(key);
        },
      ),
      { numRuns: 500 },
    );
  });
});
