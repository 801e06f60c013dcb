/**
 * The salt-rest-wsgi command as one file another user can run. A clone
 * under a 0700 directory (/root, a `mktemp -d` folder) is out of reach of
 * any other user: a server run as one (test/permissions.test.ts) finds
 * neither bin/ nor node_modules/tsx there. So the command is bundled with
 * esbuild (what tsx runs on) from the same sources into a fresh 0755
 * directory under the system's temporary directory, with the package.json
 * beside it (the command reads its version there), and run with plain node.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, chmod, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Native addons and ws's optional speed-ups stay out of the bundle: it
 * requires them in a try and falls back to JavaScript (msgpackr without its
 * extractor, ws without bufferutil), as the installed package does without them.
 */
const OPTIONAL = ['msgpackr-extract', 'bufferutil', 'utf-8-validate'];

let copy: Promise<string> | undefined;

/** The path of the bundled command (made once per test process, removed at its exit). */
export function readableServer(): Promise<string> {
  copy ??= bundle();
  return copy;
}

async function bundle(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'salt-rest-wsgi-copy-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755);
  await copyFile(join(repoRoot, 'package.json'), join(dir, 'package.json'));
  const out = join(dir, 'bin', 'salt-rest-wsgi.mjs');
  await build({
    entryPoints: [join(repoRoot, 'bin', 'salt-rest-wsgi.ts')],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${process.versions.node.split('.')[0]}`,
    external: OPTIONAL,
    logLevel: 'error',
    // The CommonJS packages (ws) require Node's modules: in an ES module
    // bundle that takes a real require.
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  await chmod(join(dir, 'bin'), 0o755);
  await chmod(out, 0o644);
  return out;
}
