/**
 * `node --import tsx --import ./test/support/import-source.mjs app.mjs`:
 * `import ... from 'salt-rest-wsgi'` in app.mjs loads this checkout's
 * lib/index.ts (through tsx), so the examples run against the sources under
 * test rather than a dist/ build that may be stale. The installed package
 * resolves the same name through its `exports` map (test/package.test.ts).
 */
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const SOURCE = new URL('../../lib/index.ts', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  // Handed on to tsx's resolver, which marks the .ts file for its loader.
  return nextResolve(specifier === 'salt-rest-wsgi' ? SOURCE : specifier, context);
}

// This file is also the hooks module, loaded again on the hooks thread.
if (isMainThread) register(import.meta.url);
