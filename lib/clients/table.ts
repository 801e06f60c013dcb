/**
 * The clients, one entry each: whether it waits for its job's end on the
 * event bus, how its item's fields are read, and how the read call runs.
 * salt/netapi/__init__.py's NetapiClient has one method per client; this is
 * that list, and the only one: the dispatcher takes every fact about a
 * client from here.
 */
import { BadRequestError } from '../errors.js';
import type { MasterOptions } from '../salt/config.js';
import { batchCall, runBatch } from './batch.js';
import type { AnswerSink } from './answer-sink.js';
import type { ClientContext } from './context.js';
import type { Lowstate } from './fields.js';
import { localCall, runLocal, runLocalAsync } from './local.js';
import { runLocalSubset, subsetCall } from './local-subset.js';
import { runRunner, runRunnerAsync, runnerCall } from './runner.js';
import { runWheel, runWheelAsync, wheelLoad } from './wheel.js';

/** One client: `read` checks an item and gives the call that `run` takes. */
export interface ClientSpec<Call> {
  /** It waits for its job on the bus, and stops when run's `signal` aborts: the others ignore the signal. */
  readonly waitsForJob: boolean;
  /** The client's fields, read and checked once (400 for a field of the wrong shape); durations in ms. */
  read(low: Lowstate, opts: MasterOptions): Call;
  /** With a `sink` (only given when `streamsMinions`), each minion's entry goes there as it comes (./answer-sink.ts). */
  run(ctx: ClientContext, call: Call, signal?: AbortSignal, sink?: AnswerSink): Promise<unknown>;
  /** Its result is one entry per minion, which run can give a sink as they come. */
  readonly streamsMinions?: boolean;
}

/** A client as the dispatcher sees it: its call's type stays inside. */
export interface Client {
  readonly waitsForJob: boolean;
  readonly streamsMinions?: boolean;
  /** Why the client is refused although it is known and enabled. */
  readonly unsupported?: string;
  /** read() now; the returned function runs the call. */
  prepare(low: Lowstate, opts: MasterOptions): (ctx: ClientContext, signal?: AbortSignal, sink?: AnswerSink) => Promise<unknown>;
}

/** A table entry: read and run agree on `Call`, checked here, once. */
function client<Call>(spec: ClientSpec<Call>): Client {
  return {
    waitsForJob: spec.waitsForJob,
    streamsMinions: spec.streamsMinions ?? false,
    prepare(low, opts) {
      const call = spec.read(low, opts);
      return (ctx, signal, sink) => spec.run(ctx, call, signal, spec.streamsMinions ? sink : undefined);
    },
  };
}

export const SSH_NOT_SUPPORTED =
  "The 'ssh' client is not supported by this server: it needs salt-ssh, which only Python's salt-api provides.";

export const CLIENT_TABLE = {
  local: client({ waitsForJob: true, streamsMinions: true, read: localCall, run: runLocal }),
  local_async: client({ waitsForJob: false, read: localCall, run: runLocalAsync }),
  local_subset: client({ waitsForJob: true, streamsMinions: true, read: subsetCall, run: runLocalSubset }),
  local_batch: client({ waitsForJob: true, streamsMinions: true, read: batchCall, run: runBatch }),
  runner: client({ waitsForJob: true, read: (low, opts) => runnerCall(low, opts, true), run: runRunner }),
  runner_async: client({ waitsForJob: false, read: (low, opts) => runnerCall(low, opts, false), run: runRunnerAsync }),
  wheel: client({ waitsForJob: false, read: wheelLoad, run: runWheel }),
  wheel_async: client({ waitsForJob: false, read: wheelLoad, run: runWheelAsync }),
  ssh: {
    waitsForJob: false,
    unsupported: SSH_NOT_SUPPORTED,
    prepare() {
      throw new BadRequestError(SSH_NOT_SUPPORTED);
    },
  },
} as const satisfies Record<string, Client>;

export type ClientName = keyof typeof CLIENT_TABLE;

/** Every client name, in Salt's order. */
export const CLIENTS = Object.freeze(Object.keys(CLIENT_TABLE)) as readonly ClientName[];

/** The clients that wait for their job on the event bus (for the log of a bus this user may not connect to). */
export const WAITING_CLIENTS: readonly ClientName[] = CLIENTS.filter((name) => CLIENT_TABLE[name].waitsForJob);

export function isClientName(value: unknown): value is ClientName {
  return typeof value === 'string' && Object.hasOwn(CLIENT_TABLE, value);
}
