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
import { positiveInteger } from '../numbers.js';

export interface OpenChannelOptions {
  /** Default timeout of one request, ms. */
  timeoutMs: number;
}

/** One transport: how its channel is made from the master's options, and which socket says its master runs. */
interface Transport {
  open(opts: MasterOptions, options: OpenChannelOptions): RequestChannel;
  /**
   * The socket in sock_dir that is there while a master on this transport
   * runs (salt/netapi/__init__.py: _is_master_running looks for one):
   * ./master-sockets.ts checks it.
   */
  runningSocket: string;
}

const TRANSPORTS: Readonly<Record<string, Transport>> = {
  zeromq: {
    // zeromq takes no TLS: Salt warns and ignores `ssl` there.
    open: (opts, { timeoutMs }) => new ZmqRequestChannel({ address: requestAddress(opts), timeoutMs }),
    // The request workers' socket (salt/transport/zeromq.py: RequestServer.zmq_device).
    runningSocket: 'workers.ipc',
  },
  tcp: {
    open: (opts, { timeoutMs }) => {
      const { host, port } = requestHost(opts);
      return new TcpRequestChannel({ host, port, timeoutMs, tls: tlsConnectOptions(opts.ssl, host) });
    },
    // No workers.ipc here: the publisher's pull socket (salt/transport/tcp.py: PublishServer).
    runningSocket: 'publish_pull.ipc',
  },
  ws: {
    open: (opts, { timeoutMs }) => {
      const { host, port } = requestHost(opts);
      // One connection per master worker at most: a ws worker answers a connection's requests one at a time.
      const workers = positiveInteger(opts.worker_threads);
      const connections = workers === undefined ? undefined : Math.min(workers, 8);
      return new WsRequestChannel({ host, port, timeoutMs, connections, tls: tlsConnectOptions(opts.ssl, host) });
    },
    // As tcp (salt/transport/ws.py: PublishServer). Salt's own netapi looks
    // for workers.ipc on ws, which is why its APIs answer 503 there.
    runningSocket: 'publish_pull.ipc',
  },
};

/** The transports Salt has (salt/transport/base.py: TRANSPORTS), as the master config names them. */
export const TRANSPORT_NAMES = Object.keys(TRANSPORTS);

/** The socket whose presence says a master on `transport` runs (Salt's default, zeromq's, for a transport it does not have). */
export function runningSocket(transport: string): string {
  return (Object.hasOwn(TRANSPORTS, transport) ? TRANSPORTS[transport] : TRANSPORTS.zeromq).runningSocket;
}

/** Every transport's running socket, once each. */
export const RUNNING_SOCKETS: readonly string[] = [...new Set(Object.values(TRANSPORTS).map((t) => t.runningSocket))];

/**
 * The request channel of the master's `transport`. Throws ConfigError for a
 * transport Salt does not have, or an `ssl` file that can't be read.
 */
export function openRequestChannel(opts: MasterOptions, options: OpenChannelOptions): RequestChannel {
  const transport = Object.hasOwn(TRANSPORTS, opts.transport) ? TRANSPORTS[opts.transport] : undefined;
  if (!transport) {
    throw new ConfigError(
      `Unsupported transport ${JSON.stringify(opts.transport)} in the master config: use one of ${TRANSPORT_NAMES.join(', ')}`,
    );
  }
  return transport.open(opts, options);
}
