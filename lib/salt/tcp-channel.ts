/**
 * The master's request channel on Salt's tcp transport (`transport: tcp`):
 * one TCP (or TLS, from the config's `ssl`) connection to ret_port carrying
 * framed messages (./tcp-frame.ts). The master handles each message as it
 * is read and answers under the request's `mid`
 * (salt/transport/tcp.py: SaltMessageServer.handle_stream), so any number of
 * requests are in flight on the one connection, matched by id.
 *
 * As the ZeroMQ channel does: requests wait in our own queue while there is
 * no connection, a request that times out before it is written is never
 * written, and the requests written to a connection that drops fail at once
 * (ConnectionLostError), since the master answers on the connection a
 * request came on.
 */
import net from 'node:net';
import tls from 'node:tls';
import { hostPort, type RequestChannelOptions } from './channel.js';
import { FrameStreamError } from './errors.js';
import { type Opened, StreamChannel } from './stream-channel.js';
import { positiveOr } from '../numbers.js';
import { FramedMessageReader, frameMessage, messageId, type FramedMessage } from './tcp-frame.js';

export interface TcpChannelOptions extends RequestChannelOptions {
  host: string;
  port: number;
  /** tls.connect options (./tls-options.ts); plain TCP without. */
  tls?: tls.ConnectionOptions;
  /** A connection not up (TLS included) within this is dropped and tried again (default 10 s). */
  connectTimeoutMs?: number;
}

/** Salt's RequestClient wraps its ids before 2^31 - 1 (salt/transport/tcp.py: _max_messages). */
const MAX_MESSAGE_ID = 2 ** 31 - 2;

/** A master that accepts the connection but doesn't finish TLS within this is dropped (as the ZeroMQ handshake). */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A reply larger than this is not one (the stream is broken): the connection is dropped. */
const MAX_REPLY_BYTES = 2 ** 31;

export class TcpRequestChannel extends StreamChannel {
  private readonly options: TcpChannelOptions;
  private readonly reader: FramedMessageReader;

  constructor(options: TcpChannelOptions) {
    super(`${options.tls ? 'tls' : 'tcp'}://${hostPort(options.host, options.port)}`, MAX_MESSAGE_ID, options);
    this.options = options;
    this.reader = new FramedMessageReader((message) => this.onReply(message), MAX_REPLY_BYTES);
    this.start();
  }

  protected frame(id: number, payload: Record<string, unknown>): Buffer {
    return frameMessage(payload, { mid: id });
  }

  protected open(): Opened {
    const { host, port } = this.options;
    const secure = this.options.tls !== undefined;
    this.reader.reset();
    const connectTimeoutMs = positiveOr(this.options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
    this.upWithin(connectTimeoutMs, `no ${secure ? 'TLS handshake' : 'connection'} within ${connectTimeoutMs} ms`);
    return secure
      ? { socket: tls.connect({ ...this.options.tls, host, port }), connectEvent: 'secureConnect' }
      : { socket: net.connect({ host, port }), connectEvent: 'connect' };
  }

  protected onConnect(): void {
    this.up(); // nothing to agree on: requests go out at once
  }

  protected read(chunk: Buffer): void {
    try {
      this.reader.push(chunk);
    } catch (err) {
      if (!(err instanceof FrameStreamError)) throw err;
      this.drop(`the master sent what is not Salt's framing (${err.message})`);
    }
  }

  private onReply(message: FramedMessage | undefined): void {
    if (!message) return; // not a {head, body} message: nothing to match it to
    const id = messageId(message);
    if (id === undefined) return;
    this.answered(id);
    this.requests.resolve(id, message.body); // false: a late reply to a request that timed out
  }
}
