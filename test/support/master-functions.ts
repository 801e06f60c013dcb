/**
 * The runner and wheel functions of the test master double (a small subset
 * of salt/runners/ and salt/wheel/, with their Python signatures so that the
 * master maps keyword arguments onto them as Salt's format_call does).
 * Tests add or replace functions with `master.runnerFunctions.set(...)` /
 * `master.wheelFunctions.set(...)`.
 */
import type { BoundCall, PySignature } from './python-call.js';
import { checkMinions, globToRegExp, type TargetableMinion } from './targeting.js';
import type { MinionSpec } from './minions.js';
import { CommandExecutionError } from './python-call.js';

/** A job the master published, with the returns seen so far (its job cache). */
export interface JobRecord {
  jid: string;
  pub: Record<string, unknown>;
  minions: string[];
  startedAt: Date;
  /** Return data by minion id, as fired on `salt/job/<jid>/ret/<id>`. */
  returns: Map<string, Record<string, unknown>>;
}

/** What a runner or wheel function can see and do. */
export interface MasterCallContext {
  client: 'runner' | 'wheel';
  fun: string;
  jid: string;
  user: string;
  jobs: Map<string, JobRecord>;
  /** The master's runner functions (what `salt.cmd sys.runner_argspec` reports). */
  runnerFunctions: ReadonlyMap<string, MasterFunction>;
  /** Accepted minions (all minion specs, silent ones included). */
  accepted(): Array<TargetableMinion & { silent: boolean }>;
  /** The minions a job of the master reaches: the accepted ones, and on a master of masters those behind its syndics. */
  reached(): Array<TargetableMinion & { silent: boolean }>;
  keys: { pre: Set<string>; rejected: Set<string>; denied: Set<string> };
  addMinion(spec: MinionSpec): void;
  removeMinion(id: string): void;
  fire(tag: string, data: Record<string, unknown>): void;
  sleep(ms: number): Promise<void>;
  sleepScale: number;
  /** ClearFuncs.mk_token of these credentials: token data, or '' (the runner auth.mk_token). */
  mkToken(load: Record<string, unknown>): Promise<unknown>;
  /** Set the function's retcode (`__context__['retcode']`): success is retcode == 0. */
  setRetcode(code: number): void;
}

export interface MasterFunction extends PySignature {
  /** Text after "Usage:" when the call's arguments don't fit (Salt shows the docstring). */
  doc?: string;
  run(bound: BoundCall, ctx: MasterCallContext): unknown;
}

function sortedIgnoreCase(ids: Iterable<string>): string[] {
  return [...ids].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
}

function targeted(ctx: MasterCallContext, tgt: unknown, tgtType: unknown, among = ctx.accepted()) {
  const accepted = among;
  const ids = new Set(checkMinions(tgt, String(tgtType ?? 'glob'), accepted).minions);
  return accepted.filter((m) => ids.has(m.id));
}

/**
 * salt/utils/args.py argspec_report over the runner functions: `module`
 * with `*` or `.` is a glob (fnmatch), otherwise a module name.
 */
function argspecReport(functions: ReadonlyMap<string, MasterFunction>, module: string): Record<string, unknown> {
  const match =
    module.includes('*') || module.includes('.') ? (f: string) => globToRegExp(module).test(f) : (f: string) => f.startsWith(`${module}.`);
  const ret: Record<string, unknown> = {};
  for (const [fun, fn] of functions) {
    if (!match(fun)) continue;
    ret[fun] = {
      args: fn.params?.length ? fn.params : null,
      defaults: fn.defaults?.length ? fn.defaults : null,
      varargs: fn.varargs ? true : null,
      kwargs: fn.varkw ? true : null,
    };
  }
  return ret;
}

/** The execution functions the double's `salt.cmd` runner can run on the master (salt/modules/sysmod.py). */
function masterModuleCall(ctx: MasterCallContext, fun: string, args: unknown[]): unknown {
  switch (fun) {
    case 'sys.runner_argspec':
      return argspecReport(ctx.runnerFunctions, args.length ? String(args[0]) : '');
    case 'sys.list_runner_functions':
      return [...ctx.runnerFunctions.keys()].sort();
    default:
      throw new CommandExecutionError(`'${fun}' is not available.`);
  }
}

export function defaultRunnerFunctions(): Map<string, MasterFunction> {
  return new Map<string, MasterFunction>([
    [
      'salt.cmd',
      { name: 'cmd', params: ['fun'], varargs: true, varkw: true, run: (b, ctx) => masterModuleCall(ctx, String(b.values.fun), b.rest) },
    ],
    [
      'test.metasyntactic',
      {
        name: 'metasyntactic',
        params: ['locality'],
        defaults: ['us'],
        run: (b) =>
          ({
            us: ['foo', 'bar', 'baz', 'qux', 'quux', 'quuz', 'corge', 'grault', 'garply', 'waldo', 'fred', 'plugh', 'xyzzy', 'thud'],
            uk: ['wibble', 'wobble', 'wubble', 'flob'],
          })[String(b.values.locality)] ?? null,
      },
    ],
    ['test.arg', { name: 'arg', varargs: true, varkw: true, run: (b) => ({ args: b.rest, kwargs: b.extra }) }],
    // salt/runners/auth.py mk_token(**load): the credentials come as its keyword arguments (the item's kwarg).
    ['auth.mk_token', { name: 'mk_token', varkw: true, run: (b, ctx) => ctx.mkToken(b.extra) }],
    [
      'test.sleep',
      {
        name: 'sleep',
        params: ['s_time'],
        defaults: [10],
        run: async (b, ctx) => {
          await ctx.sleep(Number(b.values.s_time) * 1000 * ctx.sleepScale);
          return true;
        },
      },
    ],
    [
      'jobs.lookup_jid',
      {
        name: 'lookup_jid',
        params: ['jid', 'ext_source', 'returned', 'missing', 'display_progress'],
        defaults: [null, true, false, false],
        run: (b, ctx) => {
          const job = ctx.jobs.get(String(b.values.jid));
          const ret: Record<string, unknown> = {};
          if (!job) return ret;
          if (b.values.returned) for (const [id, data] of job.returns) ret[id] = data.return;
          if (b.values.missing) for (const id of job.minions) if (!job.returns.has(id)) ret[id] = 'Minion did not return';
          return ret;
        },
      },
    ],
    [
      'jobs.list_job',
      {
        name: 'list_job',
        params: ['jid', 'ext_source', 'display_progress'],
        defaults: [null, false],
        run: (b, ctx) => {
          const job = ctx.jobs.get(String(b.values.jid));
          if (!job) return {};
          const result: Record<string, unknown> = {};
          for (const [id, data] of job.returns) result[id] = { return: data.return };
          return {
            jid: job.jid,
            Function: job.pub.fun,
            Arguments: job.pub.arg,
            Target: job.pub.tgt,
            'Target-type': job.pub.tgt_type,
            User: job.pub.user,
            StartTime: job.startedAt.toISOString(),
            Minions: job.minions,
            Result: result,
          };
        },
      },
    ],
    [
      'manage.up',
      {
        name: 'up',
        // Salt 3007.1's (sys.runner_argspec manage.up); show_ip came later.
        params: ['tgt', 'tgt_type', 'timeout', 'gather_job_timeout'],
        defaults: ['*', 'glob', null, null],
        run: (b, ctx) =>
          sortedIgnoreCase(
            // The minions that answered the runner's test.ping, behind a syndic too.
            targeted(ctx, b.values.tgt, b.values.tgt_type, ctx.reached())
              .filter((m) => !m.silent)
              .map((m) => m.id),
          ),
      },
    ],
    [
      'manage.down',
      {
        name: 'down',
        params: ['removekeys', 'tgt', 'tgt_type', 'timeout', 'gather_job_timeout'],
        defaults: [false, '*', 'glob', null, null],
        run: (b, ctx) =>
          sortedIgnoreCase(
            targeted(ctx, b.values.tgt, b.values.tgt_type)
              .filter((m) => m.silent)
              .map((m) => m.id),
          ),
      },
    ],
    [
      'manage.status',
      {
        name: 'status',
        params: ['output', 'tgt', 'tgt_type', 'timeout', 'gather_job_timeout'],
        defaults: [true, '*', 'glob', null, null],
        run: (b, ctx) => {
          const ms = targeted(ctx, b.values.tgt, b.values.tgt_type);
          return {
            up: sortedIgnoreCase(ms.filter((m) => !m.silent).map((m) => m.id)),
            down: sortedIgnoreCase(ms.filter((m) => m.silent).map((m) => m.id)),
          };
        },
      },
    ],
    [
      'event.send',
      {
        name: 'send',
        params: ['tag', 'data', 'with_env', 'with_grains', 'with_pillar'],
        defaults: [null, false, false, false],
        varkw: true,
        run: (b, ctx) => {
          const data: Record<string, unknown> = { ...b.extra };
          if (b.values.data && typeof b.values.data === 'object' && !Array.isArray(b.values.data)) Object.assign(data, b.values.data);
          ctx.fire(String(b.values.tag), data);
          return true;
        },
      },
    ],
  ]);
}

function keyState(ctx: MasterCallContext) {
  return {
    minions: sortedIgnoreCase(ctx.accepted().map((m) => m.id)),
    minions_pre: sortedIgnoreCase(ctx.keys.pre),
    minions_rejected: sortedIgnoreCase(ctx.keys.rejected),
    minions_denied: sortedIgnoreCase(ctx.keys.denied),
  };
}

function matcher(match: unknown): (id: string) => boolean {
  const patterns = (Array.isArray(match) ? match : String(match).split(',')).map((p) => globToRegExp(String(p)));
  return (id) => patterns.some((re) => re.test(id));
}

export function defaultWheelFunctions(): Map<string, MasterFunction> {
  return new Map<string, MasterFunction>([
    ['key.list_all', { name: 'list_all', run: (_b, ctx) => ({ ...keyState(ctx), local: ['master.pem', 'master.pub'] }) }],
    [
      'key.list',
      {
        name: 'list_',
        params: ['match'],
        run: (b, ctx) => {
          const s = keyState(ctx);
          switch (String(b.values.match)) {
            case 'pre':
            case 'un':
            case 'unaccepted':
              return { minions_pre: s.minions_pre };
            case 'acc':
            case 'accepted':
              return { minions: s.minions };
            case 'rej':
            case 'rejected':
              return { minions_rejected: s.minions_rejected };
            case 'den':
            case 'denied':
              return { minions_denied: s.minions_denied };
            case 'all':
              return s;
            default:
              return {};
          }
        },
      },
    ],
    [
      'key.accept',
      {
        name: 'accept',
        params: ['match', 'include_rejected', 'include_denied'],
        defaults: [false, false],
        run: (b, ctx) => {
          const test = matcher(b.values.match);
          const sources = [ctx.keys.pre];
          if (b.values.include_rejected) sources.push(ctx.keys.rejected);
          if (b.values.include_denied) sources.push(ctx.keys.denied);
          const accepted: string[] = [];
          for (const source of sources) {
            for (const id of [...source].filter(test)) {
              source.delete(id);
              ctx.addMinion({ id });
              accepted.push(id);
            }
          }
          return accepted.length ? { minions: sortedIgnoreCase(accepted) } : {};
        },
      },
    ],
    [
      'key.reject',
      {
        name: 'reject',
        params: ['match', 'include_accepted', 'include_denied'],
        defaults: [false, false],
        run: (b, ctx) => {
          const test = matcher(b.values.match);
          const rejected = [...ctx.keys.pre].filter(test);
          rejected.forEach((id) => ctx.keys.pre.delete(id));
          if (b.values.include_accepted) {
            for (const m of ctx.accepted().filter((m) => test(m.id))) {
              ctx.removeMinion(m.id);
              rejected.push(m.id);
            }
          }
          rejected.forEach((id) => ctx.keys.rejected.add(id));
          return rejected.length ? { minions_rejected: sortedIgnoreCase(rejected) } : {};
        },
      },
    ],
    [
      'key.delete',
      {
        name: 'delete',
        params: ['match'],
        run: (b, ctx) => {
          const test = matcher(b.values.match);
          const ret: Record<string, string[]> = {};
          const gone = ctx
            .accepted()
            .filter((m) => test(m.id))
            .map((m) => m.id);
          gone.forEach((id) => ctx.removeMinion(id));
          if (gone.length) ret.minions = sortedIgnoreCase(gone);
          for (const [state, set] of [
            ['minions_pre', ctx.keys.pre],
            ['minions_rejected', ctx.keys.rejected],
            ['minions_denied', ctx.keys.denied],
          ] as const) {
            const hit = [...set].filter(test);
            hit.forEach((id) => set.delete(id));
            if (hit.length) ret[state] = sortedIgnoreCase(hit);
          }
          return ret;
        },
      },
    ],
    [
      'minions.connected',
      {
        name: 'connected',
        run: (_b, ctx) =>
          sortedIgnoreCase(
            ctx
              .accepted()
              .filter((m) => !m.silent)
              .map((m) => m.id),
          ),
      },
    ],
  ]);
}
