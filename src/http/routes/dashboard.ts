/**
 * GET /dashboard: the operator's page, one self-contained HTML file (inline
 * CSS and JS, no build step). The route is public; the page asks for a key
 * and calls the API with it, as an Authorization header.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RoutePlugin } from './types.js';

/** Beside the compiled routes too: `npm run build` copies it into dist/http. */
const PAGE = new URL('../dashboard.html', import.meta.url);

/**
 * Allows the page's own inline <script> and <style> blocks by their SHA-256
 * and nothing else: no other script or style, no inline handlers or style
 * attributes, fetches to this origin only, no frames, no form submissions.
 * Hashes rather than 'unsafe-inline', so markup that reached the page some
 * other way could not run.
 */
export function contentSecurityPolicy(html: string): string {
  const hashes = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}(?:\\s[^>]*)?>([\\s\\S]*?)</${tag}>`, 'g'))]
      .map((m) => `'sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}'`)
      .join(' ');
  return [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    // The empty data: favicon, so the browser does not ask for /favicon.ico.
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export const dashboardRoutes: RoutePlugin = async (app) => {
  // Read once, at start-up: a missing file stops the engine from starting rather than the page from loading.
  const html = readFileSync(PAGE, 'utf8');
  const csp = contentSecurityPolicy(html);
  app.get(
    '/dashboard',
    {
      config: { access: 'public' },
      schema: { tags: ['operations'], summary: 'Operator dashboard (HTML): asks for a key, then shows markets, risk, liquidations and trades live' },
    },
    (_req, reply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('content-security-policy', csp)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('cache-control', 'no-cache')
        .send(html),
  );
};
