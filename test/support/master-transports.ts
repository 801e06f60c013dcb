/**
 * The master's request server on Salt's tcp and ws transports, for the
 * master double and the transport tests, built on node:net, node:tls, the
 * `ws` package's server and msgpackr (never on lib/salt's channels):
 *
 * - tcp (salt/transport/tcp.py: SaltMessageServer, RequestServer): a stream
 *   of msgpack `{head, body}` maps; each message is handled as soon as it is
 *   read, and its reply written as `{head: <the request's head>, body: reply}`,
 *   packed with msgpack's new spec (bin type, str8), as frame_msg does.
 * - ws (salt/transport/ws.py: RequestServer.handle_message): WebSocket on any
 *   path; each binary message is `payload.dumps({enc, load, version})`; the
 *   messages of one connection are handled one after another, each answered
 *   (`payload.dumps(reply)`, msgpack's old spec: see encodeReply) before the
 *   next is read.
 *
 * Either takes `tls` (node:tls server options) as the master takes `ssl`.
 */
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import http from 'node:http';
import { Unpackr } from 'msgpackr';
import { WebSocketServer, type WebSocket } from 'ws';
import { decode, encode } from '../../lib/salt/codec.js';
import { encodeReply } from './master-wire.js';

export interface IncomingRequest {
  /** The decoded payload (`{enc, load, version}`), or undefined when its bytes are not msgpack. */
  payload: any;
  /** The raw payload bytes (ws) or the frame's head (tcp). */
  raw?: Buffer;
  head?: unknown;
  /** Which connection it came on (1, 2, ... in accept order). */
  connection: number;
  /** Answer with `value`, packed as this transport's master packs replies. */
  reply(value: unknown): void;
  /** Answer with these bytes as they are (the whole message on ws, the whole frame on tcp). */
  replyRaw(bytes: Buffer): void;
  /** Drop the connection it came on (a master dying with it). */
  dropConnection(): void;
}

export interface TransportServerOptions {
  /** Port to bind on 127.0.0.1 (default: a free one). */
  port?: number;
  /** TLS server options (key, cert, ...): the master's `ssl`. */
  tls?: tls.TlsOptions;
}

export interface TransportServer {
  readonly port: number;
  readonly received: IncomingRequest[];
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  close(): Promise<void>;
}

export type RequestHandler = (request: IncomingRequest) => void | Promise<void>;

// The outer {head, body} map: plain msgpack; the body goes through lib/salt/codec.ts's extensions.
const frameReader = new Unpackr({ mapsAsObjects: true, useRecords: false, moreTypes: false, structuredClone: false });

/** Bind with retries: a port just released by a stopped master can take a moment to be free again. */
async function listen(server: net.Server, port: number | undefined): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: port ?? 0 }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return (server.address() as net.AddressInfo).port;
    } catch (err) {
      if (!port || attempt >= 100 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Salt's tcp request server. */
export async function startTcpRequestServer(onRequest: RequestHandler, options: TransportServerOptions = {}): Promise<TransportServer> {
  const received: IncomingRequest[] = [];
  const sockets = new Set<net.Socket>();
  const counts = { accepted: 0, sockets };
  const onConnection = (socket: net.Socket) => {
    const connection = ++counts.accepted;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let consumed = 0;
      const messages: Array<{ head: unknown; body: unknown }> = [];
      try {
        frameReader.unpackMultiple(pending, (value: any, _start?: number, end?: number) => {
          consumed = end ?? pending.length;
          messages.push(value);
        });
      } catch (err) {
        if (!(err as { incomplete?: boolean }).incomplete) {
          socket.destroy(); // not msgpack: the master's handle_stream closes the stream
          return;
        }
      }
      pending = pending.subarray(consumed);
      for (const message of messages) {
        if (typeof message !== 'object' || message === null || !('head' in message)) {
          socket.destroy(); // framed_msg["head"] fails: the stream is closed
          return;
        }
        const head = message.head;
        // The body was unpacked with the plain reader: run it through Salt's codec for its extensions.
        const request: IncomingRequest = {
          payload: decode(encode(message.body)),
          head,
          connection,
          reply: (value) => socket.destroyed || socket.write(encode({ head, body: value })),
          replyRaw: (bytes) => socket.destroyed || socket.write(bytes),
          dropConnection: () => socket.destroy(),
        };
        received.push(request);
        void onRequest(request);
      }
    });
  };
  const server = options.tls ? tls.createServer(options.tls, onConnection) : net.createServer(onConnection);
  const port = await listen(server, options.port);
  return serverHandle(port, received, counts, async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

/** What a request server of either transport answers to the tests. */
function serverHandle(
  port: number,
  received: IncomingRequest[],
  counts: { accepted: number; sockets: Set<unknown> },
  close: () => Promise<void>,
): TransportServer {
  return {
    port,
    received,
    get accepted() {
      return counts.accepted;
    },
    get open() {
      return counts.sockets.size;
    },
    close,
  };
}

/** Salt's ws request server. */
export async function startWsRequestServer(onRequest: RequestHandler, options: TransportServerOptions = {}): Promise<TransportServer> {
  const received: IncomingRequest[] = [];
  const sockets = new Set<WebSocket>();
  const counts = { accepted: 0, sockets };
  const httpServer = options.tls ? https.createServer(options.tls) : http.createServer();
  const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false, maxPayload: 2 ** 31 });
  wss.on('connection', (socket: WebSocket) => {
    const connection = ++counts.accepted;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    // One message at a time: the next is handled once the previous one is answered.
    let turn: Promise<void> = Promise.resolve();
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        if (data.toString() === 'close') socket.close();
        return;
      }
      turn = turn.then(
        () =>
          new Promise<void>((answered) => {
            let payload: unknown;
            try {
              payload = decode(data);
            } catch {
              payload = undefined;
            }
            const send = (bytes: Buffer) => {
              if (socket.readyState === socket.OPEN) socket.send(bytes, { binary: true });
              answered();
            };
            const request: IncomingRequest = {
              payload,
              raw: data,
              connection,
              reply: (value) => send(encodeReply(value)),
              replyRaw: send,
              dropConnection: () => {
                socket.terminate();
                answered();
              },
            };
            received.push(request);
            void onRequest(request);
          }),
      );
    });
  });
  const port = await listen(httpServer, options.port);
  return serverHandle(port, received, counts, async () => {
    for (const s of sockets) s.terminate();
    wss.close();
    httpServer.closeAllConnections?.();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
  });
}
