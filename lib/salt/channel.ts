/**
 * The request channel to the master, whatever carries it: what the
 * dispatcher and the clients use of it. Salt's masters speak one of several
 * transports on ret_port (salt/transport/base.py: TRANSPORTS, request_client);
 * each is one module behind this interface, and openRequestChannel()
 * (./transports.ts) picks it from the master's `transport` option:
 *
 *   zeromq  ./zmq-channel.ts  (ZMTP DEALER, ./zmtp.ts)
 *   tcp     ./tcp-channel.ts  (msgpack `{head: {mid}, body}` frames, ./tcp-frame.ts)
 *   ws      ./ws-channel.ts   (one binary WebSocket message per request)
 *
 * zeromq and tcp share one connection's lifecycle (./stream-channel.ts);
 * all three queue their requests alike (./queued-channel.ts).
 *
 * tcp and ws take TLS from the master config's `ssl` (./tls-options.ts).
 */
import type { Socket } from 'node:net';
import type { MasterOptions } from './config.js';

export interface RequestChannel {
  /**
   * Send a clear-text load; resolve with the master's decoded reply, whatever
   * it is (the clients read it). Rejects with a MasterNotAnsweringError
   * (./errors.ts) when the master does not
   * answer within `timeoutMs` (else the channel's default), the connection
   * drops before the reply, or the channel is closed.
   */
  send(load: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
  /** Requests waiting for a reply. */
  readonly pending: number;
  /** A connection to the master is up right now. */
  readonly connected: boolean;
  /** Connections to the master that came up so far (for monitoring: reconnects are those after the first). */
  readonly connects?: number;
  /** Reject everything pending and release the connection(s). */
  close(): void;
}

export interface RequestChannelOptions {
  /** Default per-request timeout (ms). */
  timeoutMs?: number;
  /** How often a connection is retried while the master is away (default 100 ms). */
  reconnectMs?: number;
}

/** Salt's default `timeout` (5 s) when the caller gives none. */
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_RECONNECT_MS = 100;

/**
 * `<interface>:<ret_port>` as a host and port to connect to, 0.0.0.0 (and
 * ::) meaning loopback (salt/config/__init__.py: apply_master_config).
 */
export function requestHost(opts: MasterOptions): { host: string; port: number } {
  let host = String(opts.interface);
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '::1';
  return { host: host.replace(/^\[(.*)\]$/, '$1'), port: Number(opts.ret_port) };
}

/** `host:port` with an IPv6 host bracketed. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * A TCP connect to a loopback port nobody listens on can meet itself (a
 * simultaneous open, when the kernel picks that same port as the source):
 * our own requests would then come back as their replies. Such a socket is
 * dropped and the connect tried again, as Go's net package does (selfConnect).
 */
export function isSelfConnected(socket: Socket): boolean {
  return socket.localPort !== undefined && socket.localPort === socket.remotePort && socket.localAddress === socket.remoteAddress;
}
