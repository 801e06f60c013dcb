import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import test from 'node:test';
import { fileURLToPath } from 'node:url';

const SHAPES = fileURLToPath(new URL('../lib/shapes.ts', import.meta.url));

test('keepShape keeps its instance through full GCs, as it would not be otherwise', () => {
  // A process of its own: full GCs on demand (--expose-gc), and nothing else holding either object.
  const script = `
    const { keepShape } = await import(${JSON.stringify(SHAPES)});
    class Wait { constructor() { this.a = 1; this.b = 'x'; } }
    const kept = new WeakRef(keepShape(new Wait()));
    const other = new WeakRef(new Wait());
    await new Promise((r) => setTimeout(r, 0));
    for (let i = 0; i < 3; i++) globalThis.gc();
    console.log(JSON.stringify({ kept: kept.deref() instanceof Wait, other: other.deref() !== undefined }));
  `;
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), { kept: true, other: false });
});
