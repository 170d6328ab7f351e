/**
 * The group committer on a real PostgreSQL: which submissions share a commit.
 * A commit is one transaction, so rows that shared one carry the same xmin.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPostgresUnavailable } from '../../src/services/dependencies.js';
import { GroupCommitter, type LedgerRow } from '../../src/store/ledger.js';
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
