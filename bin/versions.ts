/**
 * --version and -V/--versions-report (as Salt's commands have them,
 * salt/version.py versions_report): this package's version, the Salt lines
 * and transports it speaks, and what it runs on.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { isNativeAccelerationEnabled } from 'msgpackr';
import { SALT_LINES } from '../lib/salt/lines.js';
import { TRANSPORT_NAMES } from '../lib/salt/transports.js';

export const NAME = 'salt-rest-wsgi';

/** The package's version, from its package.json. */
export function version(): string {
  // bin/ when run from source, dist/bin/ when built: the package root is one or two levels up.
  for (const rel of ['../package.json', '../../package.json']) {
    const pkg = readPackage(new URL(rel, import.meta.url));
    if (pkg?.name === NAME && pkg.version) return pkg.version;
  }
  return 'unknown';
}

function readPackage(file: URL | string): { name?: string; version?: string } | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
  } catch {
    return undefined;
  }
}

/** A dependency's version: its package.json, found above its entry point (some export no ./package.json). */
function dependencyVersion(name: string): string {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve(name));
  } catch {
    return 'not installed';
  }
  for (let up = 0; up < 4; up++, dir = dirname(dir)) {
    const pkg = readPackage(join(dir, 'package.json'));
    if (pkg?.name === name) return pkg.version ?? 'unknown';
  }
  return 'unknown';
}

export function versionsReport(): string {
  const lines = SALT_LINES.map((l) => `${l.line.padStart(10)}: checked against ${l.checked} masters (${l.transports.join(', ')})`);
  // msgpackr-extract is an optional native addon (README: Installing): without it strings decode in JavaScript.
  const extractor = isNativeAccelerationEnabled ? 'msgpackr-extract in use' : 'no msgpackr-extract: strings decoded in JavaScript';
  const deps = [
    ['Node.js', process.versions.node],
    ['msgpackr', `${dependencyVersion('msgpackr')} (${extractor})`],
    ['ws', dependencyVersion('ws')],
    ['yaml', dependencyVersion('yaml')],
  ].map(([k, v]) => `${k.padStart(10)}: ${v}`);
  return `${NAME} ${version()}

Salt lines:
${lines.join('\n')}
Transports: ${TRANSPORT_NAMES.join(', ')} (as the master config's transport; ws: Salt 3007 and later)

Dependency versions:
${deps.join('\n')}
`;
}
