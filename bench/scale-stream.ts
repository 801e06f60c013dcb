/**
 * The scale bench's streamed cases (issue 23): the same fleets asked with
 * `Accept: application/x-ndjson`, read line by line as the lines come
 * (a 1 MiB line is gathered from its chunks, never the whole answer), each
 * minion's line checked and timed. The master double's process says when
 * each return left it (bench/fleet-process.ts, `times`), so each line's
 * delay after its return is measured on the machine's one clock.
 */
import http from 'node:http';
import { bigReturn, fleetIds, type FleetSpec } from './fleet.js';
import { cpuTargets, ping, type Answer, type Case, type Result } from './scale-cases.js';

const MB = 1024 * 1024;
const CREDENTIALS = { eauth: 'pam', username: 'saltdev', password: 'x' };
const wallNow = () => performance.timeOrigin + performance.now();

/** The floor of every line's delay after its minion's return, ms. */
const LINE_DELAY_MS = 50;
const RSS_LIMIT = 200 * MB;

let fillerText = '';
function filler(bytes: number): string {
  if (fillerText.length < bytes) fillerText = 'x'.repeat(bytes);
  return fillerText;
}

/** POST `low` for the streamed answer; each minion line is checked against `c.expect` and its arrival kept. */
export function postStreamed(port: number, low: Record<string, unknown>, c: Case): Promise<Answer> {
  const body = JSON.stringify([low]);
  const headers = { 'Content-Type': 'application/json', Accept: 'application/x-ndjson', 'Content-Length': Buffer.byteLength(body) };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers }, (res) => {
      const ids = new Map(fleetIds(c.fleet.count).map((id, i) => [id, i]));
      const lineAt = new Map<string, number>();
      let wrong = 0;
      let bytes = 0;
      let complete = false;
      let firstByteAt = 0;
      let pieces: Buffer[] = [];
      const onLine = (text: string, at: number) => {
        const line = JSON.parse(text) as Record<string, unknown>;
        if (line.done === true) complete = true;
        if (typeof line.minion !== 'string') return;
        const index = ids.get(line.minion);
        if (index === undefined || lineAt.has(line.minion) || line.return !== c.expect?.(line.minion, index)) wrong++;
        lineAt.set(line.minion, at);
      };
      res.on('data', (chunk: Buffer) => {
        const at = wallNow();
        firstByteAt ||= at;
        bytes += chunk.length;
        let from = 0;
        for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, from)) {
          pieces.push(chunk.subarray(from, nl));
          if (res.statusCode === 200) onLine(Buffer.concat(pieces).toString('utf8'), at);
          pieces = [];
          from = nl + 1;
        }
        if (from < chunk.length) pieces.push(chunk.subarray(from));
      });
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          entries: lineAt.size,
          wrong,
          missing: c.fleet.count - lineAt.size,
          complete: complete && pieces.length === 0,
          bytes,
          firstByteAt,
          lastByteAt: wallNow(),
          lineAt,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Each line's delay after its minion's return, ms: the first line's, and the largest. */
function lineDelays(r: Result): { first: number; worst: number; worstId: string; median: number } {
  const times = r.returnTimes ?? {};
  const lineAt = r.answer.lineAt ?? new Map<string, number>();
  const delays: Array<[string, number]> = [];
  for (const [id, at] of lineAt) if (times[id] !== undefined) delays.push([id, at - times[id]]);
  const firstReturn = Math.min(...Object.values(times));
  const firstLine = Math.min(...lineAt.values());
  let worst: [string, number] = ['-', Number.NaN];
  for (const d of delays) if (!(d[1] <= worst[1])) worst = d;
  const sorted = delays.map((d) => d[1]).sort((a, b) => a - b);
  return {
    first: firstLine - firstReturn,
    worst: worst[1],
    worstId: worst[0],
    median: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN,
  };
}

const allRight = (r: Result) => r.answer.status === 200 && r.answer.complete && r.answer.wrong === 0 && r.answer.missing === 0;
const rightText = (r: Result) => `${r.answer.status}, ${r.answer.wrong} wrong, ${r.answer.missing} missing`;

const fleet = (count: number, extra: Partial<FleetSpec>): FleetSpec => ({
  count,
  delayMs: 200,
  spreadMs: 0,
  silentEvery: 0,
  returnBytes: 0,
  publishReplyDelayMs: 0,
  ...extra,
});

export const STREAM_CASES: Case[] = [
  {
    // As the JSON answer's 10,000 (bench/scale-cases.ts): its fleet, three fresh servers, each asked twice, the floor beside.
    name: 'streamed: test.ping, 10,000 minions',
    fleet: ping(10_000),
    low: { client: 'local', tgt: 'fleet-*', fun: 'test.ping', ...CREDENTIALS },
    expect: () => true,
    stream: true,
    runs: 3,
    floor: true,
    again: true,
    targets: (r) => [{ name: 'streamed 10,000: every minion true', text: rightText(r), ok: allRight(r) }, ...cpuTargets(r, 'streamed')],
  },
  {
    name: 'streamed: 10,000 minions returning over 10 s',
    fleet: fleet(10_000, { spreadMs: 10_000 }),
    // `timeout` past the spread: the last minions return 10 s in, as a slow fleet's would, without find_job.
    low: { client: 'local', tgt: 'fleet-*', fun: 'test.ping', ...CREDENTIALS, timeout: 60 },
    expect: () => true,
    stream: true,
    returnTimes: true,
    targets: (r) => {
      const d = lineDelays(r);
      return [
        { name: 'streamed 10,000 over 10 s: every minion true', text: rightText(r), ok: allRight(r) },
        {
          name: 'streamed 10,000 over 10 s: first line after the first return',
          text: `${d.first.toFixed(1)} ms (<= ${LINE_DELAY_MS} ms)`,
          ok: d.first <= LINE_DELAY_MS,
        },
        {
          name: 'streamed 10,000 over 10 s: every line after its return',
          text: `worst ${d.worst.toFixed(1)} ms (${d.worstId}), median ${d.median.toFixed(1)} ms (<= ${LINE_DELAY_MS} ms)`,
          ok: allRight(r) && d.worst <= LINE_DELAY_MS,
        },
      ];
    },
  },
  {
    name: 'streamed: 1,000 × 1 MB returns',
    // 10 ms apart, `timeout: 300`: as the JSON answer's case (bench/scale-cases.ts).
    fleet: fleet(1000, { spreadMs: 10_000, returnBytes: 1_000_000 }),
    low: { client: 'local', tgt: 'fleet-*', fun: 'test.arg', ...CREDENTIALS, timeout: 300 },
    expect: (id) => bigReturn(id, 1_000_000, filler(1_000_000)),
    stream: true,
    targets: (r) => [
      { name: 'streamed 1,000 × 1 MB: every return intact', text: rightText(r), ok: allRight(r) },
      {
        name: 'streamed 1,000 × 1 MB: peak RSS',
        text: `${(r.peakRss / MB).toFixed(0)} MiB (< ${RSS_LIMIT / MB} MiB; ${(r.answer.bytes / MB).toFixed(0)} MiB streamed)`,
        ok: r.peakRss < RSS_LIMIT,
      },
    ],
  },
];
