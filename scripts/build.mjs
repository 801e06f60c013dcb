#!/usr/bin/env node
// The prepare script: compile lib/ and bin/ into dist/ (what the package
// runs and ships). npm runs it after `npm ci` in a clone and before
// `npm pack`; never when a tarball is installed, which carries dist/.
//
// TypeScript is a dev dependency. A production install from a clone
// (`npm ci --omit=dev`) has no tsc in node_modules, and a git clone has no
// dist/ (built files are not committed), so there it runs the compiler the
// lock file names through `npm exec`: fetched into npm's cache for this one
// build, never installed among the production dependencies.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = ['-p', join(root, 'tsconfig.build.json')];
rmSync(join(root, 'dist'), { recursive: true, force: true });

let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc && existsSync(tsc)) {
  execFileSync(process.execPath, [tsc, ...args], { cwd: root, stdio: 'inherit' });
} else {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const locked = (name) => {
    const version = lock.packages?.[`node_modules/${name}`]?.version;
    if (!version) throw new Error(`package-lock.json names no ${name} version to build with`);
    return `${name}@${version}`;
  };
  const [typescript, nodeTypes] = [locked('typescript'), locked('@types/node')];
  process.stderr.write(`salt-rest-wsgi: dev dependencies omitted; building dist/ with ${typescript} and ${nodeTypes} through npm exec\n`);
  const npm = process.env.npm_execpath; // the npm running this script, when it does
  const [cmd, pre] = npm && npm.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
  // Node's types sit next to that tsc (<npx cache>/node_modules/@types), not in this project.
  const script = 'tsc "$@" --typeRoots "$(dirname "$(dirname "$(command -v tsc)")")/@types"';
  execFileSync(cmd, [...pre, 'exec', '--yes', `--package=${typescript}`, `--package=${nodeTypes}`, '--', 'sh', '-c', script, 'tsc', ...args], {
    cwd: root,
    stdio: 'inherit',
    // npm's settings for this install (omit=dev) are not those of the compiler's own install.
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_(omit|production|only)$/i.test(k) && k !== 'NODE_ENV')),
  });
}
