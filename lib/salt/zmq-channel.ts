/**
 * The master's request channel (ret_port): ZeroMQ, clear-text loads.
 *
 * Salt's own clients use a REQ socket: one request at a time, and a lost
 * reply leaves it stuck. The master's front is ROUTER → DEALER → REP workers,
 * and a REP worker hands back whatever envelope came before the empty
 * delimiter frame, so one DEALER can carry any number of requests at once:
 * send `[id, '', load]`, get `[id, '', reply]` back in completion order
 * (salt/transport/zeromq.py: RequestServer.zmq_device, the workers' REP
 * sockets). One connection, a Map of pending ids.
 *
 * The DEALER side of ZeroMQ's protocol is spoken here over a node:net
 * socket (./zmtp.ts says why). As with a ZeroMQ DEALER set `immediate`,
 * requests wait in our own queue while there is no connection, and a request
 * that times out before it is written is dropped: it never reaches a
 * restarted master after we gave up on it.
 */
import net from 'node:net';
import { hostPort, requestHost, type RequestChannelOptions } from './channel.js';
import type { MasterOptions } from './config.js';
import { decode, encode } from './codec.js';
import { ZmtpError } from './errors.js';
import { type Opened, StreamChannel } from './stream-channel.js';
import {
  FrameReader,
  GREETING_SIZE,
  checkGreeting,
  command,
  encodeMessage,
  greeting,
  parseCommand,
  parseMetadata,
  readyCommand,
} from './zmtp.js';

export interface ZmqChannelOptions extends RequestChannelOptions {
  /** e.g. `tcp://127.0.0.1:4506` */
  address: string;
}

/** A peer that accepts the connection but doesn't finish the handshake within this is dropped (libzmq: 30 s). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Socket types a DEALER may talk to (ZMTP 3: 28/REQREP). */
const PEER_TYPES = new Set(['ROUTER', 'DEALER', 'REP']);

const EMPTY = Buffer.alloc(0);

/** `tcp://<interface>:<ret_port>`, with 0.0.0.0 (and ::) meaning loopback (./channel.ts: requestHost). */
export function requestAddress(opts: MasterOptions): string {
  const { host, port } = requestHost(opts);
  return `tcp://${hostPort(host, port)}`;
}

/** net.connect options of a `tcp://host:port` or `ipc:///path` address. */
function connectOptions(address: string): net.NetConnectOpts {
  if (address.startsWith('ipc://')) return { path: address.slice('ipc://'.length) };
  const m = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)$/.exec(address);
  if (!m) throw new TypeError(`RequestChannel needs tcp://host:port or ipc://path, got ${JSON.stringify(address)}`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

/** Where the ZMTP handshake is; 'ready' is StreamChannel's up(). */
type HandshakeState = 'connecting' | 'greeting' | 'handshake' | 'ready';

/** Many requests in flight on one connection; replies matched by correlation id. */
export class ZmqRequestChannel extends StreamChannel {
  private readonly connectTo: net.NetConnectOpts;
  private state: HandshakeState = 'connecting';
  private readonly reader: FrameReader;
  private greetingBytes: Buffer[] = [];
  private greetingSize = 0;

  constructor(options: ZmqChannelOptions) {
    if (typeof options?.address !== 'string' || !/^(tcp|ipc):\/\/./.test(options.address)) {
      throw new TypeError(`RequestChannel needs a tcp:// or ipc:// address, got ${JSON.stringify(options?.address)}`);
    }
    const connectTo = connectOptions(options.address);
    // Correlation ids are 32 bits (the first frame of each message).
    super(options.address, 0xffff_ffff, options);
    this.connectTo = connectTo;
    this.reader = new FrameReader({ message: (frames) => this.onReply(frames), command: (body) => this.onCommand(body) });
    this.start();
  }

  protected frame(id: number, payload: Record<string, unknown>): Buffer {
    const idFrame = Buffer.allocUnsafe(4);
    idFrame.writeUInt32BE(id);
    return encodeMessage([idFrame, EMPTY, encode(payload)]);
  }

  // -- connection --------------------------------------------------------

  protected open(): Opened {
    this.state = 'connecting';
    this.greetingBytes = [];
    this.greetingSize = 0;
    this.reader.reset();
    return { socket: net.connect(this.connectTo), connectEvent: 'connect' };
  }

  protected onConnect(socket: net.Socket): void {
    this.state = 'greeting';
    // Our side of the handshake at once; the peer's comes in read().
    socket.write(Buffer.concat([greeting(), readyCommand('DEALER')]));
    this.upWithin(HANDSHAKE_TIMEOUT_MS, `no ZeroMQ handshake within ${HANDSHAKE_TIMEOUT_MS} ms`);
  }

  protected read(chunk: Buffer): void {
    try {
      this.onData(chunk);
    } catch (err) {
      if (!(err instanceof ZmtpError)) throw err;
      this.drop(err.message); // not a master we can talk to: try again later
    }
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'greeting') {
      this.greetingBytes.push(chunk);
      this.greetingSize += chunk.length;
      if (this.greetingSize < GREETING_SIZE) return;
      const bytes = Buffer.concat(this.greetingBytes, this.greetingSize);
      this.greetingBytes = [];
      checkGreeting(bytes);
      this.state = 'handshake';
      if (bytes.length === GREETING_SIZE) return;
      chunk = bytes.subarray(GREETING_SIZE);
    }
    this.reader.push(chunk);
  }

  private onCommand(body: Buffer): void {
    const { name, data } = parseCommand(body);
    if (name === 'READY' && this.state === 'handshake') {
      const peerType = parseMetadata(data).get('socket-type');
      if (peerType !== undefined && !PEER_TYPES.has(peerType)) throw new ZmtpError(`A DEALER can't talk to a ${peerType}`);
      this.state = 'ready';
      this.up();
    } else if (name === 'ERROR') {
      throw new ZmtpError(`The peer refused the connection: ${data.toString('latin1', 1, 1 + (data[0] ?? 0))}`);
    } else if (name === 'PING') {
      // ZMTP 3.1 heartbeat: PONG carries the ping's context back.
      this.socket?.write(command('PONG', data.subarray(2)));
    }
  }

  // -- requests ----------------------------------------------------------

  private onReply(frames: Buffer[]): void {
    // [id, '', reply]; anything else is not an answer to us.
    if (frames.length !== 3 || frames[0].length !== 4 || frames[1].length !== 0) return;
    const id = frames[0].readUInt32BE(0);
    if (!this.answered(id)) return; // a late reply to a request that timed out
    let reply: unknown;
    try {
      reply = decode(frames[2]);
    } catch (err) {
      this.requests.reject(id, new Error(`Undecodable reply from the master: ${(err as Error).message}`));
      return;
    }
    this.requests.resolve(id, reply);
  }
}
