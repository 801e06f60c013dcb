/**
 * HTTP helpers for the reliability tests: a plain request, a raw socket
 * that writes by hand (slow clients, broken bytes), a server on port 0
 * running a handler, a logger that records, and a count of live timers.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../lib/log.js';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

export interface RequestSpec {
  method?: string;
  path?: string;
  headers?: Record<string, string | number>;
  /** A string or Buffer is sent as is; anything else as JSON. */
  body?: unknown;
  agent?: http.Agent | false;
  /** Abort the request with this signal (the client going away). */
  signal?: AbortSignal;
  /** HTTPS, the server's certificate checked against this CA. */
  ca?: Buffer;
  /** The client's own address (a loopback alias, for tests of client addresses). */
  localAddress?: string;
}

/** One HTTP (or, given `ca`, HTTPS) request, POST of JSON unless told otherwise; resolves with the whole answer. */
export function request(port: number, spec: RequestSpec = {}): Promise<Reply> {
  const method = spec.method ?? 'POST';
  const body =
    spec.body === undefined
      ? undefined
      : typeof spec.body === 'string' || Buffer.isBuffer(spec.body)
        ? spec.body
        : JSON.stringify(spec.body);
  // A POST is JSON unless the test gives its own headers (which may leave the type out on purpose).
  const headers: Record<string, string | number> = {
    ...(method === 'POST' && !spec.headers ? { 'content-type': 'application/json' } : {}),
    ...spec.headers,
  };
  if (body !== undefined && !('content-length' in headers)) headers['content-length'] = Buffer.byteLength(body);
  const options: https.RequestOptions = {
    host: '127.0.0.1',
    port,
    method,
    path: spec.path ?? '/',
    headers,
    agent: spec.agent ?? false,
    signal: spec.signal,
  };
  if (spec.localAddress) options.localAddress = spec.localAddress;
  if (spec.ca) options.ca = spec.ca;
  return new Promise((resolve, reject) => {
    const req = (spec.ca ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A raw TCP connection: write bytes when you like, read all that comes back until it closes. */
export interface RawClient {
  socket: net.Socket;
  write(data: string | Buffer): void;
  /** Everything received, once the server closed the connection. */
  closed: Promise<string>;
  /** Received so far. */
  received(): string;
}

export function rawClient(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d));
    const closed = new Promise<string>((done) => socket.once('close', () => done(text)));
    socket.once('error', () => {}); // a reset shows as 'close'
    socket.once('connect', () =>
      resolve({
        socket,
        write: (data) => {
          if (!socket.destroyed) socket.write(data);
        },
        closed,
        received: () => text,
      }),
    );
    socket.once('error', reject);
  });
}

/** The JSON body of a raw HTTP/1.1 answer, and its status. */
export function parseRawResponse(raw: string): { status: number; headers: string; body: string } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, headers: head, body: end < 0 ? '' : raw.slice(end + 4) };
}

/**
 * HTTP/1.1 pipelining: write `requests` (raw, one after the other) on one
 * connection and read `expected` answers; their statuses, counted. Costs the
 * client little more than writing: for floods of requests.
 */
export function pipeline(port: number, requests: string, expected: number): Promise<Map<number, number>> {
  return new Promise((resolve, reject) => {
    const statuses = new Map<number, number>();
    let answers = 0;
    let tail = '';
    // Written as a Buffer made here: the string itself is not kept alive with the socket.
    const socket = net.connect(port, '127.0.0.1');
    socket.write(Buffer.from(requests, 'latin1'));
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      const text = tail + chunk;
      let end = 0;
      for (const m of text.matchAll(/HTTP\/1\.1 (\d{3}) /g)) {
        statuses.set(Number(m[1]), (statuses.get(Number(m[1])) ?? 0) + 1);
        answers++;
        end = m.index + m[0].length;
      }
      // A status line cut between two chunks (at most 12 characters of it) is read with the next one.
      tail = text.slice(Math.max(end, text.length - 12));
      if (answers >= expected) {
        socket.destroy();
        resolve(statuses);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed after ${answers} of ${expected} answers`)));
  });
}

/** The i-th address of a flood: 10.0.0.0 onwards. */
export const floodAddress = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** Requests pipelined on one connection at a time: Node's server drops a connection with thousands waiting behind a slow one. */
const PIPELINED_AT_ONCE = 500;

/**
 * `total` POSTs with a wrong password (the master's 401: a failed login),
 * the i-th with `X-Forwarded-For: address(i)`, pipelined on `connections`
 * connections (in rounds of PIPELINED_AT_ONCE each); their statuses, counted.
 */
export async function forwardedFlood(
  port: number,
  total: number,
  address: (i: number) => string,
  connections = 4,
): Promise<Map<number, number>> {
  const body = JSON.stringify([{ eauth: 'pam', username: 'flood', password: 'wrong', client: 'local_async', tgt: '*', fun: 'test.ping' }]);
  const statuses = new Map<number, number>();
  for (let first = 0; first < total; first += connections * PIPELINED_AT_ONCE) {
    const last = Math.min(total, first + connections * PIPELINED_AT_ONCE);
    const counts = await Promise.all(
      Array.from({ length: connections }, (_, c) => {
        const requests: string[] = [];
        for (let i = first + c; i < last; i += connections) {
          requests.push(
            `POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Forwarded-For: ${address(i)}\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
          );
        }
        return requests.length ? pipeline(port, requests.join(''), requests.length) : new Map<number, number>();
      }),
    );
    for (const count of counts) for (const [status, n] of count) statuses.set(status, (statuses.get(status) ?? 0) + n);
  }
  return statuses;
}

export async function serve(
  listener: http.RequestListener,
  configure?: (server: http.Server) => void,
): Promise<{ server: http.Server; port: number; close(): Promise<void> }> {
  const server = http.createServer(listener);
  configure?.(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export interface LogLine {
  level: keyof Logger;
  msg: string;
}

export function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: keyof Logger) => (msg: string) => void lines.push({ level, msg });
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

/** Live timers (setTimeout/setInterval) of this process, as Node counts its handles. */
export function liveTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

/** Everything that keeps this process alive (sockets, servers, timers, pending I/O), as Node counts it. */
export function openHandles(): number {
  return process.getActiveResourcesInfo().length;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Poll `check` until it returns true (or fail after `ms`). */
export async function until(check: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`${what} not reached within ${ms} ms`);
    await sleep(5);
  }
}
