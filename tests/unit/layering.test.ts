/**
 * The layering rules of eslint.config.js catch what they name: the domain
 * imports no store client, no I/O and no other layer; store and services
 * import nothing of HTTP. Each source is linted as if it were the file at
 * `filePath`, so the rules' file globs apply as they do to the code base.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// Only the rule under test, and so no type information (no TypeScript program to build).
const eslint = new ESLint({
  cwd: new URL('../..', import.meta.url).pathname,
  ruleFilter: ({ ruleId }) => ruleId === 'no-restricted-imports',
  overrideConfig: { languageOptions: { parserOptions: { project: null } } },
});

/** The import sources no-restricted-imports refuses in `code` when it lives at `filePath`. */
async function refused(filePath: string, imports: string[]): Promise<string[]> {
  const code = imports.map((source, i) => `import * as m${i} from '${source}';\nexport { m${i} };\n`).join('');
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => imports[Math.floor((m.line - 1) / 2)]!);
}

describe('layering lint rules', () => {
  it('refuse store clients, I/O modules and the other layers in src/domain, and allow the rest', async () => {
    const banned = ['ioredis', 'postgres', 'fastify', '@fastify/swagger', 'node:net', 'node:fs', 'node:fs/promises', 'fs', 'node:http', '../store/ledger.js', '../services/dependencies.js', '../http/app.js'];
    const allowed = ['decimal.js', './decimal.js', 'node:crypto', '../lib/timeout.js'];
    expect(await refused('src/domain/markets.ts', [...banned, ...allowed])).toEqual(banned);
  });

  it('refuse fastify and src/http in src/store and src/services, and allow their own imports', async () => {
    const banned = ['fastify', 'fastify-type-provider-zod', '@fastify/swagger', '../http/errors.js'];
    const allowed = ['ioredis', 'postgres', 'node:fs/promises', '../domain/errors.js', '../store/ledger.js', '../lib/timeout.js'];
    expect(await refused('src/store/marks.ts', [...banned, ...allowed])).toEqual(banned);
    expect(await refused('src/services/marks.ts', [...banned, ...allowed])).toEqual(banned);
  });

  it('leave src/http free to use fastify', async () => {
    expect(await refused('src/http/app.ts', ['fastify', '@fastify/swagger', '../services/dependencies.js'])).toEqual([]);
  });
});
