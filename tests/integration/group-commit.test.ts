/**
 * The group committer on a real PostgreSQL: which submissions share a commit,
 * and what a batch with a colliding item does. A commit is one transaction,
 * so rows that shared one carry the same xmin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPostgresUnavailable } from '../../src/services/dependencies.js';
import { GroupCommitter, LedgerConflict, type LedgerRow } from '../../src/store/ledger.js';
import { migrate } from '../../src/store/migrate.js';
import { inspector, newIsolation, type Inspector } from '../helpers/engine.js';

const iso = newIsolation();
let db: Inspector;
let nextAccount = 1;

beforeAll(async () => {
  db = inspector(iso);
  await migrate(db.sql, iso.schema);
});

afterAll(async () => {
  await db.destroy();
});

function committer(earlyRows: number, maxConcurrent = 6): GroupCommitter {
  return new GroupCommitter(db.sql, { maxRows: 512, maxConcurrent, earlyRows, flushTimeoutMs: 5000, isConnectionError: isPostgresUnavailable });
}

/** One deposit row each on fresh accounts, all submitted in the same turn of the event loop. */
async function submitInOneTurn(c: GroupCommitter, count: number): Promise<number[]> {
  const accounts = Array.from({ length: count }, () => nextAccount++);
  const rows: LedgerRow[] = accounts.map((accountId) => ({ accountId, seq: 1, kind: 'DEPOSIT', amount: '10', balance: '10' }));
  await Promise.all(rows.map((row) => c.submit([row])));
  return accounts;
}

/** How many rows each commit wrote, in the order the rows were submitted. */
async function commitSizes(accounts: number[]): Promise<number[]> {
  const rows = await db.sql<{ account_id: string; tx: string }[]>`
    SELECT account_id, xmin::text AS tx FROM ledger WHERE account_id = ANY(${accounts}::bigint[]) ORDER BY account_id`;
  expect(rows.map((r) => Number(r.account_id))).toEqual(accounts);
  const sizes: number[] = [];
  let last: string | undefined;
  for (const { tx } of rows) {
    if (tx === last) sizes[sizes.length - 1]!++;
    else sizes.push(1);
    last = tx;
  }
  return sizes;
}

describe('group commit', () => {
  it('without early commits, everything submitted in one turn shares one commit', async () => {
    const c = committer(0);
    expect(await commitSizes(await submitInOneTurn(c, 10))).toEqual([10]);
    await c.close();
  });

  it('sends a commit as soon as earlyRows rows wait, before the turn ends', async () => {
    const c = committer(4);
    // rows 1-4 leave at the 4th, 5-8 at the 8th, 9-10 at the end of the turn
    expect(await commitSizes(await submitInOneTurn(c, 10))).toEqual([4, 4, 2]);
    await c.close();
  });

  it('with every slot busy, rows past earlyRows wait and leave together when a slot frees', async () => {
    const c = committer(2, 1);
    // rows 1-2 take the only slot; rows 3-5 queue behind that commit and then share the next
    expect(await commitSizes(await submitInOneTurn(c, 5))).toEqual([2, 3]);
    await c.close();
  });
});

describe('a batch with a colliding item', () => {
  const deposit = (accountId: number, seq: number, clientOrderId?: string): LedgerRow => ({
    accountId,
    seq,
    kind: 'DEPOSIT',
    amount: '10',
    balance: String(10 * seq),
    ...(clientOrderId === undefined ? {} : { clientOrderId }),
  });

  it('is retried item by item: only the colliding items fail, each whole, and the others commit', async () => {
    const c = committer(0);
    const [taken, other, good1, good2, pair, mixed] = Array.from({ length: 6 }, () => nextAccount++) as [number, number, number, number, number, number];
    await c.submit([deposit(taken, 1)]);
    await c.submit([deposit(other, 1, 'order-1')]);

    // All in one turn, so one batch: its INSERT collides and rolls back whole.
    const outcomes = await Promise.allSettled([
      c.submit([deposit(good1, 1)]),
      c.submit([deposit(taken, 1)]), // same (account, seq): the primary key
      c.submit([deposit(pair, 1), deposit(pair, 2)]),
      c.submit([deposit(other, 2, 'order-1')]), // same client order id on the account
      c.submit([deposit(mixed, 1), deposit(taken, 1)]), // one good row and one colliding: neither is written
      c.submit([deposit(good2, 1)]),
    ]);
    await c.close();

    const [g1, t, p, o, m, g2] = outcomes;
    expect(g1).toMatchObject({ status: 'fulfilled', value: [{ accountId: good1, seq: 1 }] });
    expect(p).toMatchObject({ status: 'fulfilled', value: [{ accountId: pair, seq: 1 }, { accountId: pair, seq: 2 }] });
    expect(g2).toMatchObject({ status: 'fulfilled', value: [{ accountId: good2, seq: 1 }] });
    for (const [outcome, constraint] of [
      [t, 'ledger_pkey'],
      [o, 'ledger_client_order_id'],
      [m, 'ledger_pkey'],
    ] as const) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason as unknown;
      expect(reason).toBeInstanceOf(LedgerConflict);
      expect((reason as LedgerConflict).constraint).toBe(constraint);
    }

    const rows = await db.sql<{ account_id: string; seq: string; tx: string }[]>`
      SELECT account_id, seq, xmin::text AS tx FROM ledger
      WHERE account_id = ANY(${[taken, other, good1, good2, pair, mixed]}::bigint[]) ORDER BY account_id, seq`;
    const written = rows.map((r) => `${r.account_id}/${r.seq}`);
    // The two rows committed before the batch, then the good items; nothing of the mixed item.
    expect(written).toEqual([`${taken}/1`, `${other}/1`, `${good1}/1`, `${good2}/1`, `${pair}/1`, `${pair}/2`]);
    // Item by item: each good item in its own commit, and a multi-row item's rows in one.
    const tx = (account: number, seq = 1) => rows.find((r) => Number(r.account_id) === account && Number(r.seq) === seq)!.tx;
    expect(new Set([tx(good1), tx(pair), tx(good2)]).size).toBe(3);
    expect(tx(pair, 2)).toBe(tx(pair));
  });
});
