/**
 * The compiled library in dist/, which `npm start` and embedders run: the
 * bench measures it rather than the sources run through tsx, whose loader
 * adds helpers of its own (a __name() call per closure created).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Bring dist/ up to date with lib/ and bin/ (`npm run prepare`'s build). */
export function build(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot, stdio: 'inherit' });
}

/** Import dist/<file> (a path under lib/ or bin/, ending in .js). */
export function compiled<T>(file: string): Promise<T> {
  return import(new URL(`../dist/${file}`, import.meta.url).href) as Promise<T>;
}
