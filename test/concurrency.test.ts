/**
 * Many requests in flight at once over real HTTP, one shared request
 * channel and one event-bus connection: every answer is its own request's,
 * and no request waits for another. Not timed (throughput and latency are
 * measured by `npm run bench`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startMaster, type MinionSpec } from './support/master.js';
import { createHandler } from '../lib/http/handler.js';

const CRED = { eauth: 'pam', username: 'saltdev', password: 'x' };
const COUNT = 64;

function post(port: number, agent: http.Agent, body: unknown): Promise<{ status: number; json: unknown }> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

// The bound of a broken build, where requests would wait for each other (and the gate never opens).
test(`${COUNT} concurrent sync local requests each get their own minion's result`, { timeout: 10_000 }, async (t) => {
  const ids = Array.from({ length: COUNT }, (_, i) => `minion-${String(i).padStart(2, '0')}`);

  // Every minion holds its return until the master has received all the
  // publishes: the requests can only finish if none waits for another. Then
  // they return in a shuffled order, so that returns and requests don't line up.
  let published = 0;
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const minions: MinionSpec[] = ids.map((id, i) => ({
    id,
    overrides: {
      'test.whoami': async (call) => {
        await gate;
        await call.sleep((i * 37) % COUNT);
        return { id: call.minion.id, arg: call.args[0] };
      },
    },
  }));
  // Salt's own timeout: a minion answering late would be a failure, not a find_job round.
  const master = await startMaster({ minions, config: { timeout: 10, gather_job_timeout: 10 } });
  t.after(() => master.close());
  master.on('request', (r: { cmd: string; load: Record<string, unknown> }) => {
    if (r.cmd === 'publish' && r.load.fun === 'test.whoami' && ++published === COUNT) openGate();
  });

  const handler = createHandler({ config: master.configPath });
  t.after(() => handler.close());
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const agent = new http.Agent({ keepAlive: true, maxSockets: COUNT });
  t.after(() => agent.destroy());
  const port = (server.address() as AddressInfo).port;

  const answers = await Promise.all(
    ids.map((id, i) => post(port, agent, [{ client: 'local', tgt: id, fun: 'test.whoami', arg: [`token-${i}`], ...CRED }])),
  );

  answers.forEach((answer, i) => {
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.deepEqual(answer.json, { return: [{ [ids[i]]: { id: ids[i], arg: `token-${i}` } }] });
  });
  assert.equal(published, COUNT);
  // One event-bus connection served them all, not one per request.
  assert.equal(master.busClientCount, 1);
});
