/**
 * The load generator: `concurrency` callers, each sending its next request
 * as soon as its previous one is answered (a closed loop, as a pool of
 * clients does), over HTTP keep-alive connections or raw.
 */
import http from 'node:http';

export interface RunResult {
  concurrency: number;
  /** Requests answered (right or wrong). */
  count: number;
  /** Answers that were wrong, failed or not 200. */
  errors: number;
  durationMs: number;
  /** Answered requests per second. */
  rate: number;
  p50Ms: number;
  p99Ms: number;
}

/** A request: resolves true when the answer is the right one. */
export type Send = (worker: number) => Promise<boolean>;

/**
 * Run for `durationMs` (no request is started after it; those in flight are
 * waited for), or until `total` requests were started when given.
 */
export async function drive(concurrency: number, send: Send, limit: { durationMs?: number; total?: number }): Promise<RunResult> {
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  const start = performance.now();
  const end = limit.durationMs === undefined ? Infinity : start + limit.durationMs;
  const total = limit.total ?? Infinity;

  async function worker(index: number): Promise<void> {
    while (started < total && performance.now() < end) {
      started++;
      const t0 = performance.now();
      let right = false;
      try {
        right = await send(index);
      } catch {
        right = false;
      }
      latencies.push(performance.now() - t0);
      if (!right) errors++;
    }
  }

  await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
  const durationMs = performance.now() - start;
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    count: latencies.length,
    errors,
    durationMs,
    rate: (latencies.length * 1000) / durationMs,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

export interface HttpAnswer {
  status: number;
  body: unknown;
}

/** POST JSON bodies to the server over `agent`'s keep-alive connections. */
export function httpPoster(port: number, agent: http.Agent): (body: string) => Promise<HttpAnswer> {
  return (body) =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent,
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
}

/** A keep-alive agent with one connection per caller. */
export function keepAliveAgent(concurrency: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
}
