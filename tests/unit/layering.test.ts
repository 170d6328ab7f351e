/**
 * The layering rules of eslint.config.js catch what they name: the domain
 * imports no store client, no I/O and no other layer; store and services
 * import nothing of HTTP. Each source is linted as if it were the file at
 * `filePath`, so the rules' file globs apply as they do to the code base.
 */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const RULES = new Set(['no-restricted-imports', '@typescript-eslint/no-restricted-imports']);

// Only the rules under test, and so no type information (no TypeScript program to build).
const eslint = new ESLint({
  cwd: new URL('../..', import.meta.url).pathname,
  ruleFilter: ({ ruleId }) => RULES.has(ruleId),
  overrideConfig: { languageOptions: { parserOptions: { project: null } } },
});

/** The import sources no-restricted-imports refuses in `code` when it lives at `filePath`. */
async function refused(filePath: string, imports: string[], kind: 'value' | 'type' = 'value'): Promise<string[]> {
  const code = imports
    .map((source, i) => (kind === 'value' ? `import * as m${i} from '${source}';\nexport { m${i} };\n` : `import type { T${i} } from '${source}';\nexport type { T${i} };\n`))
    .join('');
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => RULES.has(m.ruleId ?? '')).map((m) => imports[Math.floor((m.line - 1) / 2)]!);
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

  it('lets src/services take a wire schema type from src/http with import type, but nothing of fastify', async () => {
    expect(await refused('src/services/marks.ts', ['../http/schemas.js', 'fastify'], 'type')).toEqual(['fastify']);
  });

  it('leave src/http free to use fastify', async () => {
    expect(await refused('src/http/app.ts', ['fastify', '@fastify/swagger', '../services/dependencies.js'])).toEqual([]);
  });
});
