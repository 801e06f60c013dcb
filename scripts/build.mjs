#!/usr/bin/env node
// The build: compile lib/ and bin/ into dist/ (what the package runs and
// ships). npm runs it as `postprepare` after `npm ci` or `npm install` in a
// clone (and in the clone npm makes of a git dependency), and as `prepack`
// before `npm pack` and `npm publish`. Neither is an install script: a
// package installed from the registry or a tarball, which carries dist/,
// runs nothing of its own, and npm's allowScripts has nothing of it to ask
// about (it would list a `prepare` script of a tarball).
//
// TypeScript is a dev dependency. A production install from a clone
// (`npm ci --omit=dev`) has no tsc in node_modules, and a git clone has no
// dist/ (built files are not committed), so there it runs the compiler the
// lock file names through `npm exec`: fetched into npm's cache for this one
// build, never installed among the production dependencies. That build
// skips type checking (noCheck, no type packages: they are dev dependencies
// too): TypeScript emits the same JavaScript either way, and the checking is
// `npm test`'s job, where the dev dependencies are.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const config = join(root, 'tsconfig.build.json');
rmSync(join(root, 'dist'), { recursive: true, force: true });

let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc && existsSync(tsc)) {
  execFileSync(process.execPath, [tsc, '-p', config], { cwd: root, stdio: 'inherit' });
} else {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const version = lock.packages?.['node_modules/typescript']?.version;
  if (!version) throw new Error('package-lock.json names no typescript version to build with');
  process.stderr.write(`salt-rest-wsgi: dev dependencies omitted; building dist/ with typescript@${version} through npm exec, unchecked\n`);
  const dir = mkdtempSync(join(tmpdir(), 'salt-rest-wsgi-build-'));
  try {
    const unchecked = join(dir, 'tsconfig.json');
    writeFileSync(unchecked, JSON.stringify({ extends: config, compilerOptions: { types: [], noCheck: true } }));
    const npm = process.env.npm_execpath; // the npm running this script, when it does
    const [cmd, pre] = npm?.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
    execFileSync(cmd, [...pre, 'exec', '--yes', `--package=typescript@${version}`, '--', 'tsc', '-p', unchecked], {
      cwd: root,
      stdio: 'inherit',
      // npm's settings for this install (omit=dev) are not those of the compiler's own install.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_(omit|production|only)$/i.test(k) && k !== 'NODE_ENV')),
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
