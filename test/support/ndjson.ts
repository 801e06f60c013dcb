/**
 * The streamed answer from a reader's side (lib/http/ndjson.ts): a POST
 * with `Accept: application/x-ndjson` whose lines are recorded with the time
 * each arrived, and the fold that turns them back into the JSON answer of
 * the same request: the contract the tests check, for every client.
 */
import http from 'node:http';
import https from 'node:https';

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
