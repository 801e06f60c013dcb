/**
 * The load generator: `concurrency` callers, each sending its next request
 * as soon as its previous one is answered (a closed loop, as a pool of
 * clients does), over HTTP keep-alive connections or raw.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

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
export async function drive(
  concurrency: number,
  send: Send,
  limit: { durationMs?: number; total?: number /** At most this many requests started per second (paced evenly). */; rate?: number },
): Promise<RunResult> {
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  const start = performance.now();
  const end = limit.durationMs === undefined ? Infinity : start + limit.durationMs;
  const total = limit.total ?? Infinity;

  async function worker(index: number): Promise<void> {
    while (started < total && performance.now() < end) {
      const slot = started++;
      if (limit.rate) {
        const wait = start + (slot * 1000) / limit.rate - performance.now();
        if (wait > 0) await sleep(wait);
      }
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

interface Connection {
  socket: net.Socket;
  chunks: Buffer[];
  size: number;
  waiting: { resolve: (answer: HttpAnswer) => void; reject: (err: Error) => void } | undefined;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/**
 * HTTP/1.1 keep-alive connections to the server, one per caller, doing as
 * little as a client can: the bytes of a request are built once per body,
 * and an answer is read by its Content-Length (the server always sends one).
 * Node's own client (http.Agent) spends about as much CPU per request as the
 * server under test, CPU that a small machine then takes from the server.
 */
export class HttpClient {
  private readonly connections: Array<Connection | undefined> = [];
  private readonly requests = new Map<string, Buffer>();

  constructor(private readonly port: number) {}

  /** POST `body` (JSON) on caller `caller`'s connection; the answer's status and parsed JSON body. */
  post(caller: number, body: string): Promise<HttpAnswer> {
    const conn = this.connections[caller] ?? this.connect(caller);
    if (conn.waiting) return Promise.reject(new Error(`caller ${caller} has a request in flight already`));
    let request = this.requests.get(body);
    if (!request) {
      const length = Buffer.byteLength(body);
      request = Buffer.from(
        `POST / HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n${body}`,
      );
      if (this.requests.size < 1000) this.requests.set(body, request);
    }
    return new Promise((resolve, reject) => {
      conn.waiting = { resolve, reject };
      conn.socket.write(request);
    });
  }

  close(): void {
    for (const conn of this.connections) conn?.socket.destroy();
    this.connections.length = 0;
  }

  private connect(caller: number): Connection {
    const socket = net.connect(this.port, '127.0.0.1');
    socket.setNoDelay(true);
    const conn: Connection = { socket, chunks: [], size: 0, waiting: undefined };
    this.connections[caller] = conn;
    const fail = (err: Error) => {
      if (this.connections[caller] === conn) this.connections[caller] = undefined;
      const waiting = conn.waiting;
      conn.waiting = undefined;
      waiting?.reject(err);
    };
    socket.on('data', (chunk: Buffer) => {
      conn.chunks.push(chunk);
      conn.size += chunk.length;
      const buf = conn.chunks.length === 1 ? conn.chunks[0] : Buffer.concat(conn.chunks, conn.size);
      conn.chunks = [buf];
      const headerEnd = buf.indexOf(HEADER_END);
      if (headerEnd < 0) return;
      const head = buf.toString('latin1', 0, headerEnd).toLowerCase();
      const length = /\r\ncontent-length: *(\d+)/.exec(head);
      if (!length) {
        socket.destroy();
        fail(new Error('answer without Content-Length'));
        return;
      }
      const end = headerEnd + 4 + Number(length[1]);
      if (buf.length < end) return;
      conn.chunks = [];
      conn.size = 0;
      let parsed: unknown;
      try {
        parsed = JSON.parse(buf.toString('utf8', headerEnd + 4, end));
      } catch {
        parsed = undefined;
      }
      const waiting = conn.waiting;
      conn.waiting = undefined;
      if (head.includes('\r\nconnection: close')) {
        this.connections[caller] = undefined;
        socket.end();
      }
      waiting?.resolve({ status: Number(head.slice(9, 12)), body: parsed });
    });
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
    return conn;
  }
}
