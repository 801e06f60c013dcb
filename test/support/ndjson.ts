/**
 * The streamed answer from a reader's side (lib/http/ndjson.ts): a POST
 * with `Accept: application/x-ndjson` whose lines are recorded with the time
 * each arrived, and the fold that turns them back into the JSON answer of
 * the same request: the contract the tests check, for every client.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

export interface Line {
  /** performance.timeOrigin + performance.now() when it arrived (the shared wall clock of this machine's processes). */
  at: number;
  value: Record<string, unknown>;
}

export interface Streamed {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The whole body as it came. */
  text: string;
  /** Its lines, parsed (a 200 answer's), in order. */
  lines: Line[];
}

export interface StreamSpec {
  body: unknown;
  headers?: Record<string, string>;
  /** Each line as it arrives (return true to stop reading: the client goes away). */
  onLine?(line: Line, req: http.ClientRequest): boolean | undefined;
  /** HTTPS with this CA. */
  ca?: Buffer;
  host?: string;
  localAddress?: string;
}

export const wallNow = (): number => performance.timeOrigin + performance.now();

/** POST `body` asking for the streamed answer; resolves at its end (or once onLine stopped it). */
export function streamPost(port: number, spec: StreamSpec): Promise<Streamed> {
  const body = typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body);
  const headers = {
    'content-type': 'application/json',
    accept: 'application/x-ndjson',
    'content-length': String(Buffer.byteLength(body)),
    ...spec.headers,
  };
  const options: https.RequestOptions = { host: spec.host ?? '127.0.0.1', port, method: 'POST', path: '/', headers, agent: false };
  if (spec.ca) options.ca = spec.ca;
  if (spec.localAddress) options.localAddress = spec.localAddress;
  return new Promise((resolve, reject) => {
    const req = (spec.ca ? https : http).request(options, (res) => {
      const lines: Line[] = [];
      let text = '';
      let partial = '';
      let stopped = false;
      const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, lines });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = wallNow();
        text += chunk;
        if (res.statusCode !== 200 || stopped) return;
        partial += chunk;
        let nl = partial.indexOf('\n');
        while (nl >= 0 && !stopped) {
          const line = { at, value: JSON.parse(partial.slice(0, nl)) as Record<string, unknown> };
          partial = partial.slice(nl + 1);
          lines.push(line);
          if (spec.onLine?.(line, req)) {
            stopped = true;
            req.destroy();
            done();
          }
          nl = partial.indexOf('\n');
        }
      });
      res.on('end', () => {
        if (partial !== '') reject(new Error(`the answer ended inside a line: ${partial.slice(0, 200)}`));
        else done();
      });
      res.on('error', (err) => (stopped ? undefined : reject(err)));
    });
    req.on('error', (err) => (req.destroyed && spec.onLine ? undefined : reject(err)));
    req.end(body);
  });
}

export interface Folded {
  status: number;
  body: unknown;
}

/**
 * The lines folded into the JSON answer: each item's result from its lines
 * (`local_batch`, per the request's items: a list of `{minion: return}`),
 * heartbeats passed over; an error line is the whole answer, as the JSON
 * answer of a failing item is. A non-200 answer is its JSON body.
 */
export function fold(streamed: Streamed, lowstates: Array<Record<string, unknown>>): Folded {
  if (streamed.status !== 200) return { status: streamed.status, body: JSON.parse(streamed.text) };
  const results: unknown[] = [];
  for (const { value: line } of streamed.lines) {
    if (line.heartbeat === true && !('item' in line)) continue;
    const item = line.item as number;
    if (line.error === true) return { status: line.status as number, body: { return: line.return } };
    if ('return' in line && !('minion' in line)) {
      results[item] = line.return;
      continue;
    }
    const isList = lowstates[item]?.client === 'local_batch';
    results[item] ??= isList ? [] : {};
    if (line.done === true) continue;
    const id = line.minion as string;
    if (isList) (results[item] as unknown[]).push('entry' in line ? line.entry : { [id]: line.return });
    else Object.defineProperty(results[item], id, { value: line.return, enumerable: true, writable: true, configurable: true });
  }
  return { status: 200, body: { return: results } };
}

export interface PausedReader {
  socket: net.Socket;
  /** Bytes the reader took so far. */
  received(): number;
  /** Read on to the connection's end: the answer as it came (`complete`: its last chunk arrived; `chunks`: its body chunk by chunk). */
  resume(): Promise<RawStreamed>;
}

/**
 * POST `body` for the streamed answer on a raw socket that reads nothing
 * (or only until its first line, `firstLine`) until resume(): a reader that
 * stopped reading, as a client stuck behind a slow link is. `Connection:
 * close`, so that the answer's end is the connection's.
 */
export async function pausedPost(port: number, body: unknown, options: { firstLine?: boolean } = {}): Promise<PausedReader> {
  const text = JSON.stringify(body);
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let bytes = 0;
  let closed = false;
  const closedOnce = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('close', () => (closed = true));
  socket.on('error', () => {}); // a server that cuts the connection: what arrived is the answer
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let waitsForFirstLine = options.firstLine === true;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    bytes += chunk.length;
    if (waitsForFirstLine && Buffer.concat(chunks).toString('latin1').split('\r\n\r\n', 2)[1]?.includes('\n')) {
      waitsForFirstLine = false;
      socket.pause();
    }
  });
  if (!options.firstLine) socket.pause();
  socket.write(
    `POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/x-ndjson\r\n` +
      `Connection: close\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
  );
  return {
    socket,
    received: () => bytes,
    async resume() {
      if (!closed) socket.resume();
      await closedOnce;
      return parseStreamed(Buffer.concat(chunks));
    },
  };
}

export interface RawStreamed extends Streamed {
  complete: boolean;
  /** A chunked answer's chunks, as text: node:http frames each res.write as one, so each is one write of the server's. */
  chunks: string[];
}

/** A raw HTTP/1.1 answer, chunked or not, as streamPost's Streamed (every line's `at`: now). */
function parseStreamed(raw: Buffer): RawStreamed {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, split).toString('latin1').split('\r\n');
  const status = Number(head[0].split(' ')[1]);
  const headers: http.IncomingHttpHeaders = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let rest = raw.subarray(split + 4);
  let complete = headers['transfer-encoding'] !== 'chunked';
  const parts: Buffer[] = [];
  if (complete) parts.push(rest);
  else {
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol < 0) break;
      const size = Number.parseInt(rest.subarray(0, eol).toString('latin1'), 16);
      if (size === 0) {
        complete = true;
        break;
      }
      if (rest.length < eol + 2 + size) {
        parts.push(rest.subarray(eol + 2)); // cut inside this chunk
        break;
      }
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 4 + size);
    }
  }
  const text = Buffer.concat(parts).toString('utf8');
  const at = wallNow();
  const whole = text.slice(0, text.lastIndexOf('\n') + 1);
  const lines =
    whole === ''
      ? []
      : whole
          .slice(0, -1)
          .split('\n')
          .map((line) => ({ at, value: JSON.parse(line) as Record<string, unknown> }));
  const chunks = headers['transfer-encoding'] === 'chunked' ? parts.map((part) => part.toString('utf8')) : [];
  return { status, headers, text, lines, complete: complete && whole.length === text.length, chunks };
}
