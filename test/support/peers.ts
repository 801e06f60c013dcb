/**
 * Minimal real peers for the transport tests: a ZeroMQ ROUTER standing in
 * for the master's request server, the master's own ROUTER → DEALER → REP
 * worker front, and a unix/TCP socket server writing event bus frames.
 * (The full master double is test/support/master.ts; these stay small so
 * the transport can be tested on its own.)
 */
import { rmSync } from 'node:fs';
import net from 'node:net';
import { Dealer, Reply, Router } from 'zeromq';
import { decode, encode } from '../../lib/salt/codec.js';

/** A request as a ROUTER sees it: [routing id, correlation id, '', payload]. */
export interface RoutedRequest {
  frames: Buffer[];
  /** The decoded payload: `{enc, load, version}`. */
  payload: any;
  /** Answer with `value` packed, on the same envelope. */
  reply(value: unknown): Promise<void>;
  /** Answer with raw bytes as the reply frame. */
  replyRaw(bytes: Buffer): Promise<void>;
  /** Send any frames through the ROUTER (the first frame picks the peer). */
  sendFrames(frames: Buffer[]): Promise<void>;
}

export interface RouterPeer {
  /** The endpoint it is bound to, e.g. tcp://127.0.0.1:40123 */
  address: string;
  /** Every request received so far. */
  received: RoutedRequest[];
  close(): void;
}

/**
 * A ROUTER bound at `address` (a free port by default) that hands every
 * request to `onRequest`, which answers (or not) when it likes.
 */
export async function startRouterPeer(
  onRequest: (request: RoutedRequest) => void | Promise<void> = (r) => r.reply({ echo: r.payload.load }),
  address = 'tcp://127.0.0.1:*',
): Promise<RouterPeer> {
  const router = new Router({ linger: 0 });
  await router.bind(address);
  const received: RoutedRequest[] = [];
  // A ROUTER never blocks on send (it drops to unknown peers), so replies
  // may be sent from anywhere, in any order.
  const send = (frames: Buffer[]) => router.send(frames);
  void (async () => {
    try {
      for await (const frames of router) {
        const envelope = frames.slice(0, -1);
        const request: RoutedRequest = {
          frames,
          payload: decode(frames[frames.length - 1]),
          reply: (value) => send([...envelope, encode(value)]),
          replyRaw: (bytes) => send([...envelope, bytes]),
          sendFrames: send,
        };
        received.push(request);
        await onRequest(request);
      }
    } catch {
      // closed
    }
  })();
  return { address: router.lastEndpoint!, received, close: () => router.close() };
}

/**
 * The master's request front as salt/transport/zeromq.py builds it: a ROUTER
 * for clients, a DEALER fanning out to REP workers (which see the client's
 * envelope and send it back). `handle` computes each reply from the load.
 */
export async function startReqServerPeer(
  handle: (load: any) => unknown | Promise<unknown>,
  { workers = 3, address = 'tcp://127.0.0.1:*' } = {},
): Promise<{ address: string; close(): void }> {
  const front = new Router({ linger: 0 });
  const back = new Dealer({ linger: 0 });
  const workersUri = `inproc://workers-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await front.bind(address);
  await back.bind(workersUri);
  const reps = Array.from({ length: workers }, () => new Reply({ linger: 0 }));
  for (const rep of reps) rep.connect(workersUri);
  const pipe = async (from: Router | Dealer, to: Router | Dealer) => {
    try {
      for await (const frames of from) await to.send(frames);
    } catch {
      // closed
    }
  };
  void pipe(front, back);
  void pipe(back, front);
  for (const rep of reps) {
    void (async () => {
      try {
        for await (const [payload] of rep) {
          const request = decode(payload) as any;
          await rep.send(encode(await handle(request.load)));
        }
      } catch {
        // closed
      }
    })();
  }
  return {
    address: front.lastEndpoint!,
    close: () => {
      for (const socket of [front, back, ...reps]) socket.close();
    },
  };
}

/** One event bus frame as the master writes it: `{head: {}, body: tag\n\n + packed data}`. */
export function eventFrame(tag: string, data: unknown): Buffer {
  return encode({ head: {}, body: Buffer.concat([Buffer.from(`${tag}\n\n`), encode(data)]) });
}

export interface EventPublisherPeer {
  /** Connected subscribers. */
  readonly clients: Set<net.Socket>;
  /** Resolves once at least `count` subscribers are connected. */
  waitForClients(count?: number): Promise<void>;
  /** Write `bytes` to every subscriber. */
  write(bytes: Uint8Array): Promise<void>;
  publish(tag: string, data: unknown): Promise<void>;
  /** Drop every subscriber and stop listening (removes the socket file). */
  close(): Promise<void>;
}

/** A server on a unix socket `path` (or TCP `port` on loopback) that writes bus frames. */
export async function startEventPublisher(where: { path: string } | { port: number }): Promise<EventPublisherPeer> {
  const clients = new Set<net.Socket>();
  const waiters: Array<() => void> = [];
  const server = net.createServer((socket) => {
    clients.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => clients.delete(socket));
    for (const wake of waiters.splice(0)) wake();
  });
  if ('path' in where) rmSync(where.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in where) server.listen(where.path, resolve);
    else server.listen(where.port, '127.0.0.1', resolve);
  });
  const write = async (bytes: Uint8Array) => {
    await Promise.all([...clients].map((socket) => new Promise<void>((resolve) => socket.write(bytes, () => resolve()))));
  };
  return {
    clients,
    async waitForClients(count = 1) {
      while (clients.size < count) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    write,
    publish: (tag, data) => write(eventFrame(tag, data)),
    async close() {
      for (const socket of clients) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if ('path' in where) rmSync(where.path, { force: true });
    },
  };
}
