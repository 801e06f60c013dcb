/**
 * `npm run bench:throttle`: what the failed-login table (lib/http/throttle.ts)
 * holds when many addresses fail: 100,000 distinct addresses (as a flood
 * through X-Forwarded-For with trust_proxy would bring) each failing once,
 * then the worst case, every tracked address one failure short of the
 * limit with five 64-character usernames. Heap figures after a full
 * collection, beside the table's own estimate; then the throttle must still
 * work for the latest address. PASS/FAIL per target; exit 1 on a FAIL.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { build, compiled } from './compiled.js';
import { startMaster } from '../test/support/master.js';
import { floodAddress, forwardedFlood, request } from '../test/support/http.js';

build();
const { AuthThrottle, DEFAULT_AUTH_FAILURE_ADDRESSES, DEFAULT_AUTH_FAILURE_LIMIT, DEFAULT_AUTH_FAILURE_WINDOW_MS } =
  await compiled<typeof import('../lib/http/throttle.js')>('lib/http/throttle.js');
const { createHandler } = await compiled<typeof import('../lib/http/handler.js')>('lib/http/handler.js');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const MB = 1024 * 1024;
const ADDRESSES = 100_000;
/** The default table's heap, at most: the README's figure, with room. */
const HEAP_LIMIT_BYTES = 16 * MB;

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const address = floodAddress;

/** Let the flood's connections close on both sides before the heap is read. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 500));

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

interface Figures {
  name: string;
  addresses: number;
  heapBytes: number;
  approxBytes?: number;
  more?: string;
  throttlesLatest: boolean;
}

/** The handler on node:http (trust_proxy, default limits), flooded with one failure from each of ADDRESSES addresses. */
async function httpFlood(): Promise<Figures> {
  const master = await startMaster({ users: { saltdev: { password: 'x', permissions: ['.*', '@runner'] } } });
  const handler = createHandler({ config: master.configPath, trustProxy: true });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  // Warm up the request path (the addresses of the warm-up leave the table in the flood).
  await forwardedFlood(port, 2000, (i) => `192.168.${i >> 8}.${i & 255}`);
  await settle();
  const before = heapUsed();
  const statuses = await forwardedFlood(port, ADDRESSES, address);
  if (statuses.get(401) !== ADDRESSES) throw new Error(`unexpected answers: ${JSON.stringify([...statuses])}`);
  await settle();
  const heapBytes = heapUsed() - before;
  // As many other addresses again: the table replaces entries, it does not grow.
  const second = await forwardedFlood(port, ADDRESSES, (i) => `11.${address(i).slice(3)}`);
  if (second.get(401) !== ADDRESSES) throw new Error(`unexpected answers: ${JSON.stringify([...second])}`);
  await settle();
  const secondHeapBytes = heapUsed() - before - heapBytes;
  const addresses = handler.stats().failedLoginAddresses;
  const latest = `11.${address(ADDRESSES - 1).slice(3)}`;
  const wrong = { eauth: 'pam', username: 'saltdev', password: 'wrong', client: 'runner', fun: 'test.arg' };
  const xff = (a: string) => ({ 'content-type': 'application/json', 'x-forwarded-for': a });
  for (let k = 1; k < DEFAULT_AUTH_FAILURE_LIMIT; k++) await request(port, { body: [wrong], headers: xff(latest) });
  const throttled = await request(port, { body: [{ ...wrong, password: 'x' }], headers: xff(latest) });
  const neighbour = await request(port, { body: [{ ...wrong, password: 'x' }], headers: xff(`11.${address(ADDRESSES - 2).slice(3)}`) });
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  handler.close();
  await master.close();
  return {
    name: 'HTTP, one failure each',
    addresses,
    heapBytes,
    more: `, another ${ADDRESSES.toLocaleString('en')} addresses after it: heap ${secondHeapBytes < 0 ? '' : '+'}${(secondHeapBytes / MB).toFixed(2)} MB`,
    throttlesLatest: throttled.status === 429 && neighbour.status === 200,
  };
}

/** The table alone, filled as the handler fills it. */
function measure(name: string, failuresEach: number, names: (i: number, k: number) => string): Figures {
  const before = heapUsed();
  const table = new AuthThrottle({ limit: DEFAULT_AUTH_FAILURE_LIMIT, windowMs: DEFAULT_AUTH_FAILURE_WINDOW_MS, logger: silent });
  const now = performance.now();
  for (let i = 0; i < ADDRESSES; i++) {
    for (let k = 0; k < failuresEach; k++) table.fail(address(i), { eauth: 'pam', username: names(i, k), password: 'x' }, now + i / 1000);
  }
  const heapBytes = heapUsed() - before;
  const { addresses, approxBytes } = table.stats();
  // The latest address fails up to the limit: throttled.
  const latest = address(ADDRESSES - 1);
  for (let k = failuresEach; k < DEFAULT_AUTH_FAILURE_LIMIT; k++)
    table.fail(latest, { eauth: 'pam', username: 'u', password: 'x' }, now + 200);
  const throttlesLatest = table.retryAfterS(latest, now + 200) > 0 && table.retryAfterS(address(ADDRESSES - 2), now + 200) === 0;
  return { name, addresses, heapBytes, approxBytes, throttlesLatest };
}

const runs = [
  await httpFlood(),
  measure('table, one failure each', 1, (i) => `user${i % 50}`),
  measure(`table, ${DEFAULT_AUTH_FAILURE_LIMIT - 1} failures each, 5 long names`, DEFAULT_AUTH_FAILURE_LIMIT - 1, (_i, k) =>
    `${k % 5}`.padEnd(64, 'n'),
  ),
];

const lines = [
  `failed-login table, ${ADDRESSES.toLocaleString('en')} addresses, cap ${DEFAULT_AUTH_FAILURE_ADDRESSES.toLocaleString('en')}:`,
];
let failed = false;
for (const r of runs) {
  lines.push(
    `  ${r.name}: ${r.addresses} entries, heap +${(r.heapBytes / MB).toFixed(2)} MB (${(r.heapBytes / r.addresses).toFixed(0)} B/entry)` +
      (r.approxBytes === undefined ? '' : `, the table's estimate ${(r.approxBytes / MB).toFixed(2)} MB`) +
      (r.more ?? ''),
  );
  const checks = [
    [`${r.name}: entries at the cap`, r.addresses === DEFAULT_AUTH_FAILURE_ADDRESSES],
    [`${r.name}: heap under ${HEAP_LIMIT_BYTES / MB} MB`, r.heapBytes < HEAP_LIMIT_BYTES],
    [`${r.name}: the latest address is throttled, its neighbour is not`, r.throttlesLatest],
  ] as const;
  for (const [name, ok] of checks) {
    lines.push(`  ${name}: ${ok ? 'PASS' : 'FAIL'}`);
    failed ||= !ok;
  }
}
console.log(lines.join('\n'));
process.exitCode = failed ? 1 : 0;
