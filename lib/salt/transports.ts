/**
 * The transports to the master's ret_port, by the name of its `transport`
 * option (salt/transport/base.py: request_client): the one place a
 * transport is chosen.
 */
import { type RequestChannel, requestHost } from './channel.js';
import type { MasterOptions } from './config.js';
import { ConfigError } from './errors.js';
import { ZmqRequestChannel, requestAddress } from './zmq-channel.js';
import { TcpRequestChannel } from './tcp-channel.js';
import { tlsConnectOptions } from './tls-options.js';
import { WsRequestChannel } from './ws-channel.js';

export interface OpenChannelOptions {
  /** Default timeout of one request, ms. */
  timeoutMs: number;
}

/** One transport: how its channel is made from the master's options. */
type Transport = (opts: MasterOptions, options: OpenChannelOptions) => RequestChannel;

const TRANSPORTS: Readonly<Record<string, Transport>> = {
  // zeromq takes no TLS: Salt warns and ignores `ssl` there.
  zeromq: (opts, { timeoutMs }) => new ZmqRequestChannel({ address: requestAddress(opts), timeoutMs }),
  tcp: (opts, { timeoutMs }) => {
    const { host, port } = requestHost(opts);
    return new TcpRequestChannel({ host, port, timeoutMs, tls: tlsConnectOptions(opts.ssl, host) });
  },
  ws: (opts, { timeoutMs }) => {
    const { host, port } = requestHost(opts);
    // One connection per master worker at most: a ws worker answers a connection's requests one at a time.
    const workers = Number(opts.worker_threads);
    const connections = Number.isInteger(workers) && workers > 0 ? Math.min(workers, 8) : undefined;
    return new WsRequestChannel({ host, port, timeoutMs, connections, tls: tlsConnectOptions(opts.ssl, host) });
  },
};

/** The transports Salt has (salt/transport/base.py: TRANSPORTS), as the master config names them. */
export const TRANSPORT_NAMES = Object.keys(TRANSPORTS);

/**
 * The request channel of the master's `transport`. Throws ConfigError for a
 * transport Salt does not have, or an `ssl` file that can't be read.
 */
export function openRequestChannel(opts: MasterOptions, options: OpenChannelOptions): RequestChannel {
  const open = Object.hasOwn(TRANSPORTS, opts.transport) ? TRANSPORTS[opts.transport] : undefined;
  if (!open) {
    throw new ConfigError(
      `Unsupported transport ${JSON.stringify(opts.transport)} in the master config: use one of ${TRANSPORT_NAMES.join(', ')}`,
    );
  }
  return open(opts, options);
}
