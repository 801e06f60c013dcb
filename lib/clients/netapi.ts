/**
 * The client dispatcher: one lowstate item in, one result out, as Salt's
 * salt/netapi/__init__.py (NetapiClient.run) does.
 *
 * One request channel and one event bus connection serve every call; the
 * bus starts connecting at construction so that it is ready before the
 * first synchronous job. Usable without HTTP:
 *
 *     const netapi = new NetapiClient(loadMasterConfig());
 *     await netapi.run({ client: 'local', tgt: '*', fun: 'test.ping', eauth: 'pam', username, password });
 *     netapi.close();
 */
import { userInfo } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { MasterOptions } from '../salt/config.js';
import type { RequestChannel } from '../salt/channel.js';
import { openRequestChannel } from '../salt/transports.js';
import { EventBus, eventBusOptions } from '../salt/event-bus.js';
import {
  AuthenticationError,
  BadRequestError,
  MASTER_UNAVAILABLE_MESSAGE,
  MasterPermissionError,
  SHUTTING_DOWN_MESSAGE,
  ServiceUnavailableError,
} from '../errors.js';
import { eventBusProblem, isMasterRunning, sockDirProblem } from '../salt/master-sockets.js';
import { isPlainObject } from '../objects.js';
import { toJson } from '../json.js';
import { truthy, type Lowstate } from './fields.js';
import type { ClientContext, ItemReport } from './context.js';
import type { AnswerSink } from './answer-sink.js';
import { silentLogger, type Logger } from '../log.js';
import { CLIENT_TABLE, isClientName, type Client } from './table.js';

export type { Lowstate } from './fields.js';
export type { AnswerSink, ItemEnd } from './answer-sink.js';
export type { ItemReport } from './context.js';
export { CLIENTS, SSH_NOT_SUPPORTED, type ClientName } from './table.js';

export interface NetapiClientOptions {
  /** Timeout of one request/reply towards the master, ms. Default 30 s. */
  masterTimeoutMs?: number;
  /** @deprecated The old name of masterTimeoutMs. */
  requestTimeoutMs?: number;
  /** How long a synchronous call waits for a disconnected event bus before 503, ms. Default 2 s (or masterTimeoutMs if shorter). */
  busReadyTimeoutMs?: number;
  /** Logger for job-level messages (never given secrets). */
  logger?: Logger;
  /**
   * What one synchronous call (local, local_subset, local_batch) may hold of
   * its jobs' returns, in packed bytes; past it the call fails with 507 and
   * lets go of them. Default: no ceiling.
   */
  maxResultBytes?: number;
  /**
   * A `local` return that is a map or a list comes as RawJson (lib/json.ts):
   * its JSON text, carried from the event's bytes, for a caller that writes
   * results with toJson (the handler). Default false: results are values.
   */
  rawReturns?: boolean;
}

/** NetapiClient.stats(). */
export interface NetapiStats {
  /** Requests sent to the master and not answered yet. */
  pendingRequests: number;
  /** Event bus subscriptions (one or two per synchronous job being waited for). */
  busSubscriptions: number;
  /** Synchronous waits watching for the bus to drop. */
  busWatchers: number;
  busConnected: boolean;
}

/** NetapiClient.transportStats(): the master's connections, for monitoring (lib/http/metrics.ts). */
export interface TransportStats {
  channelConnected: boolean;
  /** Connections that came up so far; reconnects are those after the first. */
  channelConnects: number;
  busConnected: boolean;
  busConnects: number;
  /** Events read from the bus so far, and their bytes. */
  busEvents: number;
  busBytes: number;
}

/** An item checked by NetapiClient.prepare(), ready to run. */
export interface PreparedItem {
  /** Its client waits for the job on the bus, and stops when run's `signal` aborts: the others ignore the signal. */
  readonly waitsForJob: boolean;
  /**
   * Its result is one entry per minion (local, local_subset, local_batch):
   * given a `sink`, run hands it each entry as it comes, keeps none, and
   * resolves with an empty result (./answer-sink.ts). The others ignore the sink.
   * `report` is filled in as it runs (its jid, its minions: the audit line);
   * `logger` takes its log lines instead of the dispatcher's (one that names the request).
   */
  readonly streamsMinions: boolean;
  run(signal?: AbortSignal, sink?: AnswerSink, report?: ItemReport, logger?: Logger): Promise<unknown>;
}

export const DEFAULT_MASTER_TIMEOUT_MS = 30_000;
export const DEFAULT_BUS_READY_TIMEOUT_MS = 2_000;
/** How long the answer of "is the master running" is reused. */
const MASTER_CHECK_TTL_MS = 1_000;

export class NetapiClient {
  readonly opts: MasterOptions;
  private readonly channel: RequestChannel;
  private readonly bus: EventBus;
  private readonly ctx: ClientContext;
  private masterCheck = { at: -Infinity, running: false };
  private closed = false;

  constructor(opts: MasterOptions, options: NetapiClientOptions = {}) {
    this.opts = opts;
    const logger = options.logger ?? silentLogger;
    const masterTimeoutMs = options.masterTimeoutMs ?? options.requestTimeoutMs ?? DEFAULT_MASTER_TIMEOUT_MS;
    this.channel = openRequestChannel(opts, { timeoutMs: masterTimeoutMs });
    this.bus = new EventBus(eventBusOptions(opts));
    // An EventEmitter without an 'error' listener throws; the bus reconnects by itself.
    this.bus.on('error', (err: unknown) => logger.debug(`event bus: ${(err as Error)?.message ?? String(err)}`));
    this.bus.start();
    this.ctx = {
      opts,
      channel: this.channel,
      bus: this.bus,
      logger,
      masterTimeoutMs,
      // Never longer than a request to the master may take: a request while
      // the master is down ends within the request timeout.
      busReadyTimeoutMs: options.busReadyTimeoutMs ?? Math.min(DEFAULT_BUS_READY_TIMEOUT_MS, masterTimeoutMs),
      user: saltUser(),
      maxResultBytes: options.maxResultBytes,
      rawReturns: options.rawReturns === true,
    };
  }

  /**
   * Every check of Salt's NetapiClient.run (master running, client known and
   * enabled, credentials present, raw_shell, token shape) plus `fun` and the
   * client's own fields; throws the HttpError subclass the handler answers
   * with (README: Status codes). `index` names the item in messages.
   */
  check(low: unknown, index?: number): asserts low is Lowstate {
    this.prepare(low, index);
  }

  /** check() then run the item; `signal` aborts waiting (the job keeps running on the master). */
  async run(low: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.prepare(low).run(signal);
  }

  /**
   * check() now, run later: for a caller that checks every item of a request
   * before running any (the handler). Each item is checked and read once.
   */
  prepare(low: unknown, index?: number): PreparedItem {
    if (!isPlainObject(low)) {
      throw new BadRequestError(index === undefined ? 'A lowstate item must be an object' : `Lowstate item ${index} must be an object`);
    }
    if (!this.masterRunning()) {
      // Not seen: either it is down, or this user may not look (a 503 that says so).
      const denied = sockDirProblem(this.opts);
      throw denied ? new MasterPermissionError(denied.reply) : new ServiceUnavailableError('Salt Master is not available.');
    }

    const name = low.client;
    if (!isClientName(name)) throw new BadRequestError(`Invalid client specified: '${pythonText(name)}'`);
    const enabled = Array.isArray(this.opts.netapi_enable_clients) ? this.opts.netapi_enable_clients : [];
    if (!enabled.includes(name)) {
      throw new BadRequestError(`Client disabled: '${name}'. Add to 'netapi_enable_clients' master config option to enable.`);
    }
    if (low.token === undefined && low.eauth === undefined) {
      throw new AuthenticationError('No authentication credentials given');
    }
    if (truthy(low.raw_shell) && !this.opts.netapi_allow_raw_shell) {
      throw new AuthenticationError('Raw shell option not allowed.');
    }
    if (low.token !== undefined && !(typeof low.token === 'string' && /^[0-9a-fA-F]+$/.test(low.token))) {
      throw new AuthenticationError('Invalid token');
    }
    const client: Client = CLIENT_TABLE[name];
    if (client.unsupported) throw new BadRequestError(client.unsupported);
    if (low.fun === undefined || low.fun === null || low.fun === '') throw new BadRequestError("Missing 'fun'");
    if (typeof low.fun !== 'string') throw new BadRequestError("'fun' must be a string");

    const run = client.prepare(low, this.opts);
    return {
      waitsForJob: client.waitsForJob,
      streamsMinions: client.streamsMinions ?? false,
      // async: what the call throws becomes a rejection.
      run: async (signal?: AbortSignal, sink?: AnswerSink, report?: ItemReport, logger?: Logger) => {
        if (this.closed) throw new ServiceUnavailableError();
        return run(report || logger ? { ...this.ctx, report, logger: logger ?? this.ctx.logger } : this.ctx, signal, sink);
      },
    };
  }

  /**
   * What is held right now, for leak checks and monitoring: requests
   * waiting for the master's reply, event bus subscriptions, synchronous
   * waits watching the bus (each drops to 0 when nothing runs).
   */
  stats(): NetapiStats {
    return {
      pendingRequests: this.channel.pending,
      busSubscriptions: this.bus.subscriptionCount,
      busWatchers: this.bus.listenerCount('disconnect'),
      busConnected: this.bus.connected,
    };
  }

  /** The master's connections as they are now, and what they carried. */
  transportStats(): TransportStats {
    return {
      channelConnected: this.channel.connected,
      channelConnects: this.channel.connects ?? 0,
      busConnected: this.bus.connected,
      busConnects: this.bus.connects,
      busEvents: this.bus.eventsRead,
      busBytes: this.bus.bytesRead,
    };
  }

  /**
   * Why the master can't be used right now, in the words of the 503 answers
   * (master down, permission denied), or undefined when its request port and
   * its event bus are both connected: what a readiness probe asks.
   */
  notReady(): string | undefined {
    if (this.closed) return SHUTTING_DOWN_MESSAGE;
    const denied = eventBusProblem(this.opts);
    if (denied) return new MasterPermissionError(denied.reply).message;
    if (this.opts.ipc_mode !== 'tcp' && !isMasterRunning(this.opts)) return MASTER_UNAVAILABLE_MESSAGE;
    if (!this.channel.connected || !this.bus.connected) return MASTER_UNAVAILABLE_MESSAGE;
    return undefined;
  }

  /** Release the request channel and the event bus. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
    this.bus.close();
  }

  /**
   * salt/netapi/__init__.py _is_master_running: the transport's socket
   * exists in sock_dir (lib/salt/master-sockets.ts). A yes is reused for a second (a
   * burst of requests costs one stat); a no is not, so the first request
   * after the master comes back finds it. With ipc_mode: tcp the master makes
   * no such file: a connection to it (request channel or bus) says it too.
   */
  private masterRunning(): boolean {
    const t = performance.now();
    if (this.masterCheck.running && t - this.masterCheck.at < MASTER_CHECK_TTL_MS) return true;
    const running = isMasterRunning(this.opts) || (this.opts.ipc_mode === 'tcp' && (this.channel.connected || this.bus.connected));
    this.masterCheck = { at: t, running };
    return running;
  }
}

/** How Python's str.format shows a value in `Invalid client specified: '...'`. */
function pythonText(value: unknown): string {
  if (value === undefined || value === null) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  // toJson, not JSON.stringify: the value may hold a BigInt (a long integer in the body).
  const text = typeof value === 'string' ? value : toJson(value);
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

/** salt.utils.user.get_specific_user: who runs this process (`sudo_<user>` under sudo). */
function saltUser(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    return 'UNKNOWN';
  }
  if (user === 'root' && process.env.SUDO_USER) return `sudo_${process.env.SUDO_USER}`;
  return user;
}
