/**
 * The transports to the master's ret_port, by the name of its `transport`
 * option: the one place a transport is chosen.
 */
import type { RequestChannel } from './channel.js';
import type { MasterOptions } from './config.js';
import { ZmqRequestChannel, requestAddress } from './request-channel.js';

export interface OpenChannelOptions {
  /** Default timeout of one request, ms. */
  timeoutMs: number;
}

/** One transport: how its channel is made from the master's options. */
type Transport = (opts: MasterOptions, options: OpenChannelOptions) => RequestChannel;

const TRANSPORTS: Readonly<Record<string, Transport>> = {
  zeromq: (opts, { timeoutMs }) => new ZmqRequestChannel({ address: requestAddress(opts), timeoutMs }),
};

/**
 * The request channel of the master's `transport`. Those without a room of
 * their own yet (tcp, ws) are spoken to over ZeroMQ, as before there was a
 * choice.
 */
export function openRequestChannel(opts: MasterOptions, options: OpenChannelOptions): RequestChannel {
  const open = TRANSPORTS[opts.transport] ?? TRANSPORTS.zeromq;
  return open(opts, options);
}
