/**
 * A 413 that every client reads (issue 14): the command answers a 2 MiB
 * body (limit 1 MiB) with 413, then reads and drops the rest of the body
 * before closing (lib/http/linger.ts), so that a client still sending gets the
 * answer rather than EPIPE or ECONNRESET. Node's fetch, curl (with and
 * without `Expect: 100-continue`) and Python's requests, 100 tries each.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { startMaster } from '../support/master.js';
import { startCommand, type Command } from '../support/command.js';
import { LINGER_MAX_MS } from '../../lib/http/linger.js';

const TRIES = 100;
const BODY = Buffer.alloc(2 * 1024 * 1024, 0x20);
const ANSWER = '{"return":"413: Request body too large"}';
const run = promisify(execFile);

// One command for every test here: its start is most of what a test would cost.
let shared: Promise<Command> | undefined;
const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});
function command(_t?: unknown): Promise<Command> {
  shared ??= (async () => {
    const master = await startMaster({ config: { rest_wsgi: { port: 0 } } });
    cleanups.push(() => master.close());
    return startCommand({ after: (fn) => cleanups.push(fn) }, ['-c', master.configPath]);
  })();
  return shared;
}

test('Node fetch reads the 413 of a 2 MiB body on 100 of 100 tries', async (t) => {
  const { port } = await command(t);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < TRIES; i++) {
    let outcome: string;
    try {
      const reply = await fetch(`http://127.0.0.1:${port}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: BODY,
      });
      outcome = `${reply.status} ${await reply.text()}`;
    } catch (err) {
      outcome = `${(err as Error).message}: ${((err as Error).cause as Error | undefined)?.message}`;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(outcomes), { [`413 ${ANSWER}`]: TRIES });
});

test('curl reads the 413 of a 2 MiB body on 100 of 100 tries, with and without Expect: 100-continue', async (t) => {
  const { port } = await command(t);
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'linger-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'body.json');
  await writeFile(file, BODY);
  // One curl for the 100 tries (spawning 100 would be most of the test's time):
  // each URL is its own connection, as the server closes it after the 413.
  for (const expect of [[], ['-H', 'Expect:']]) {
    const urls = Array.from({ length: TRIES }, () => `http://127.0.0.1:${port}/`);
    const args = [
      '-sS',
      '-w',
      ' %{http_code} %{num_connects}\n',
      '-H',
      'Content-Type: application/json',
      ...expect,
      '--data-binary',
      `@${file}`,
      ...urls,
    ];
    const { stdout, stderr } = await run('curl', args, { maxBuffer: 1 << 20 }).catch(
      (err: Error & { stdout: string; stderr: string }) => err,
    );
    assert.equal(stderr, '', `curl ${expect.join(' ')}`);
    assert.equal(stdout, `${ANSWER} 413 1\n`.repeat(TRIES), `curl ${expect.join(' ')}`);
  }
});

const python = spawnSync('python3', ['-c', 'import requests'], { stdio: 'ignore' });
test("Python's requests reads the 413 of a 2 MiB body on 100 of 100 tries", {
  skip: python.status === 0 ? false : 'python3 with requests is not installed (Debian: apt-get install python3-requests)',
}, async (t) => {
  const { port } = await command(t);
  const script = `
import collections, requests, sys
outcomes = collections.Counter()
body = b' ' * (2 * 1024 * 1024)
for _ in range(${TRIES}):
    try:
        r = requests.post(sys.argv[1], data=body, headers={'Content-Type': 'application/json'})
        outcomes['%d %s' % (r.status_code, r.text)] += 1
    except Exception as e:
        outcomes[type(e).__name__] += 1
print(dict(outcomes))
`;
  const { stdout } = await run('python3', ['-c', script, `http://127.0.0.1:${port}/`]);
  assert.equal(stdout.trim(), `{'413 ${ANSWER}': ${TRIES}}`);
});

test('the rest of the body is read only within the bound: a body that never ends is cut off after LINGER_MAX_MS', async (t) => {
  const { port } = await command(t);
  const net = await import('node:net');
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n');
  let answer = '';
  socket.setEncoding('utf8').on('data', (d: string) => (answer += d));
  socket.on('error', () => {});
  const startedAt = performance.now();
  const pump = setInterval(() => socket.write(Buffer.alloc(16 * 1024, 0x20)), 5);
  await new Promise((resolve) => socket.once('close', resolve));
  clearInterval(pump);
  const ms = performance.now() - startedAt;
  assert.match(
    answer,
    /^HTTP\/1\.1 413 Payload Too Large\r\n[\s\S]*Connection: close\r\n[\s\S]*\r\n\r\n\{"return":"413: Request body too large"\}$/,
  );
  assert.ok(ms >= LINGER_MAX_MS - 100 && ms < LINGER_MAX_MS + 1500, `closed after ${ms} ms`);
});
