// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  { languageOptions: { globals: globals.node } },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { project: './tsconfig.check.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A forgotten await on the trade path is a lost write or an unhandled rejection.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      // Money never goes through binary floating point.
      'no-restricted-globals': ['error', { name: 'parseFloat', message: 'Use decimal.js for money.' }],
      'no-restricted-properties': [
        'error',
        { object: 'Number', property: 'parseFloat', message: 'Use decimal.js for money.' },
        { object: 'Math', property: 'round', message: 'Use decimal.js rounding for money.' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // Layers (docs/architecture.md): the domain is pure math, no I/O and no other layer.
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(ioredis|postgres|fastify)(/.*)?$|^@fastify/', message: 'src/domain is pure: no Redis, PostgreSQL or HTTP library.' },
            { regex: '^(node:)?(net|fs|http|https)(/.*)?$', message: 'src/domain is pure: no I/O.' },
            { regex: '^(\\.\\./)+(store|services|http)(/|$)', message: 'src/domain may not import store, services or http.' },
          ],
        },
      ],
    },
  },
  {
    // Store and services know nothing of HTTP at run time. A service that builds a
    // wire shape itself (a booked trade's result, kept in Redis) may take its type
    // from the schema: a type import leaves nothing behind.
    files: ['src/store/**/*.ts', 'src/services/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^fastify(-.*)?(/.*)?$|^@fastify/', message: 'Only src/http speaks HTTP.' },
            { regex: '^(\\.\\./)+http(/|$)', message: 'src/store and src/services may not import src/http.', allowTypeImports: true },
          ],
        },
      ],
    },
  },
  {
    // Tests and benchmarks handle raw JSON bodies; typing every one adds nothing.
    files: ['tests/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
