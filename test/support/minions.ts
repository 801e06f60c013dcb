/**
 * The minions played by the test master double: each receives the publish
 * load the master sends out, keeps it "running" for its delay, runs the
 * function, and hands back the return as salt/minion.py (_thread_return)
 * builds it. The master fires it as `salt/job/<jid>/ret/<id>`.
 */
import {
  CommandExecutionError,
  PyTypeError,
  SaltInvocationError,
  bindCall,
  fakeTraceback,
  loadArgsAndKwargs,
  type BoundCall,
  type PySignature,
} from './python-call.js';
import { globToRegExp } from './targeting.js';

/** The load a minion receives (ClearFuncs._prep_pub): fun, arg, tgt, jid, ret, tgt_type, user, and optional extras. */
export interface PubLoad {
  fun: string;
  arg: unknown[];
  tgt: unknown;
  jid: string;
  ret: unknown;
  tgt_type?: string;
  user?: string;
  [key: string]: unknown;
}

export interface RunningJob {
  pid: number;
  pub: PubLoad;
  startedAt: number;
}

/** What a minion function is called with. */
export interface MinionCall {
  minion: Minion;
  fun: string;
  /** Positional arguments after Salt's parsing (`k=v` strings and the `__kwarg__` dict removed). */
  args: unknown[];
  /** Keyword arguments; overrides and `**kwargs` functions also get `__pub_*`. */
  kwargs: Record<string, unknown>;
  pub: PubLoad;
  /** Set the job's retcode, as a module does with `__context__['retcode']` (success is retcode == 0). */
  setRetcode(code: number): void;
  /** Sleep that the master's stop() cancels. */
  sleep(ms: number): Promise<void>;
}

/**
 * A per-test minion function: its return value is the job's `return`.
 * Throw to fail the job like Salt does: SaltInvocationError → `ERROR executing
 * '<fun>': <msg>`, CommandExecutionError → `ERROR: <msg>`, anything else →
 * `The minion function caused an exception: <traceback>` (all retcode 1).
 */
export type MinionFunction = (call: MinionCall) => unknown;

export interface MinionSpec {
  id: string;
  /** How long every job (find_job and saltutil.running excepted) runs before the minion returns, ms. Default 0. `Infinity`: never returns, but find_job keeps saying it's running. */
  delayMs?: number;
  /** How long saltutil.find_job and saltutil.running take to answer, ms. Default 0. */
  findJobDelayMs?: number;
  /** An accepted key whose minion is down: listed in publish replies, never returns, never answers find_job. */
  silent?: boolean;
  /** The functions this minion has (default: every built-in and override). find_job, saltutil.running and sys.list_functions are always there. */
  functions?: string[];
  /** Per-minion function implementations (also makes the function available). */
  overrides?: Record<string, MinionFunction>;
  /** Grains (merged over the defaults: id, os, kernel, ...). */
  grains?: Record<string, unknown>;
}

export interface MinionEnv {
  /** Run fn after ms unless the master stops first. */
  later(ms: number, fn: () => void): void;
  sleep(ms: number): Promise<void>;
  /** test.sleep N lasts N × 1000 × sleepScale ms (0.05: `test.sleep 3` takes 150 ms). */
  sleepScale: number;
  /** Master-wide overrides (after the minion's own). */
  overrides: Map<string, MinionFunction>;
  /** Deliver a return to the master. */
  deliver(minion: Minion, ret: Record<string, unknown>): void;
}

interface Builtin extends PySignature {
  run(bound: BoundCall, call: MinionCall): unknown;
}

let nextPid = 18000;

function shellRun(cmd: string, call: MinionCall): string {
  const text = cmd.trim();
  const echo = /^echo\s+(.*)$/s.exec(text);
  if (echo) return echo[1].replace(/^(['"])(.*)\1$/s, '$2');
  if (text === 'true' || text === '') return '';
  if (text === 'false') {
    call.setRetcode(1);
    return '';
  }
  const exit = /^exit\s+(\d+)$/.exec(text);
  if (exit) {
    call.setRetcode(Number(exit[1]));
    return '';
  }
  if (text === 'id') return 'uid=0(root) gid=0(root) groups=0(root)';
  if (text === 'hostname') return call.minion.id;
  call.setRetcode(127);
  return `/bin/sh: 1: ${text.split(/\s+/)[0]}: not found`;
}

/** The built-in execution functions every minion of the double has. */
const BUILTINS: Record<string, Builtin> = {
  'test.ping': { name: 'ping', run: () => true },
  'test.echo': { name: 'echo', params: ['text'], run: (b) => b.values.text },
  'test.arg': { name: 'arg', varargs: true, varkw: true, run: (b) => ({ args: b.rest, kwargs: b.extra }) },
  'test.kwarg': { name: 'kwarg', varkw: true, run: (b) => b.extra },
  'test.version': { name: 'version', run: () => '3007.1' },
  'test.outputter': { name: 'outputter', params: ['data'], run: (b) => b.values.data },
  'test.sleep': {
    name: 'sleep',
    params: ['length'],
    run: async (b, call) => {
      const seconds = Number.parseInt(String(b.values.length), 10);
      if (Number.isNaN(seconds)) throw new Error(`invalid literal for int() with base 10: '${String(b.values.length)}'`);
      await call.sleep(seconds * 1000 * call.minion.env.sleepScale);
      return true;
    },
  },
  'test.retcode': {
    name: 'retcode',
    params: ['code'],
    defaults: [42],
    run: (b, call) => {
      call.setRetcode(Number(b.values.code));
      return true;
    },
  },
  'test.exception': {
    name: 'exception',
    params: ['message'],
    defaults: ['Test Exception'],
    run: (b) => {
      throw new Error(String(b.values.message));
    },
  },
  'cmd.run': {
    name: 'run',
    params: ['cmd', 'cwd', 'runas', 'shell', 'env', 'python_shell'],
    defaults: [null, null, '/bin/sh', null, null],
    varkw: true,
    run: (b, call) => shellRun(String(b.values.cmd), call),
  },
  'grains.items': { name: 'items', run: (_b, call) => call.minion.grains },
  'grains.get': {
    name: 'get',
    params: ['key', 'default', 'delimiter'],
    defaults: ['', ':'],
    run: (b, call) => {
      let node: unknown = call.minion.grains;
      for (const part of String(b.values.key).split(String(b.values.delimiter))) {
        if (node === null || typeof node !== 'object' || !(part in (node as object))) return b.values.default;
        node = (node as Record<string, unknown>)[part];
      }
      return node;
    },
  },
  'sys.list_functions': {
    name: 'list_functions',
    varargs: true,
    varkw: true,
    run: (b, call) => {
      const all = call.minion.functionNames();
      if (b.rest.length === 0) return all;
      const names = new Set<string>();
      for (const mod of b.rest.map(String)) {
        if (mod.includes('*') || mod.includes('.')) {
          const re = globToRegExp(mod);
          all.filter((f) => re.test(f)).forEach((f) => names.add(f));
        } else all.filter((f) => f.startsWith(`${mod}.`)).forEach((f) => names.add(f));
      }
      return [...names].sort();
    },
  },
  'saltutil.find_job': {
    name: 'find_job',
    params: ['jid'],
    run: (b, call) => {
      const job = call.minion.running.get(String(b.values.jid));
      return job ? { pid: job.pid, ...job.pub } : {};
    },
  },
  'saltutil.running': {
    name: 'running',
    run: (_b, call) => [...call.minion.running.values()].filter((j) => j.pub.jid !== call.pub.jid).map((j) => ({ pid: j.pid, ...j.pub })),
  },
};

const ALWAYS_AVAILABLE = ['saltutil.find_job', 'saltutil.running', 'sys.list_functions'];

export class Minion {
  /** Jobs received and not yet returned, by jid (what find_job looks at). */
  readonly running = new Map<string, RunningJob>();

  constructor(
    readonly spec: MinionSpec,
    readonly env: MinionEnv,
  ) {}

  get id(): string {
    return this.spec.id;
  }

  get grains(): Record<string, unknown> {
    return {
      id: this.spec.id,
      os: 'Debian',
      os_family: 'Debian',
      kernel: 'Linux',
      saltversion: '3007.1',
      ...(this.spec.grains ?? {}),
    };
  }

  /** Sorted names of the functions this minion has (what sys.list_functions returns). */
  functionNames(): string[] {
    const names = new Set(this.spec.functions ?? [...Object.keys(BUILTINS), ...this.env.overrides.keys()]);
    for (const f of ALWAYS_AVAILABLE) names.add(f);
    for (const f of Object.keys(this.spec.overrides ?? {})) names.add(f);
    return [...names].sort();
  }

  /** Receive a publication: the job runs for the minion's delay, then returns (a silent minion does nothing). */
  receive(pub: PubLoad): void {
    if (this.spec.silent) return;
    const housekeeping = pub.fun === 'saltutil.find_job' || pub.fun === 'saltutil.running';
    const delay = housekeeping ? (this.spec.findJobDelayMs ?? 0) : (this.spec.delayMs ?? 0);
    const job: RunningJob = { pid: nextPid++, pub, startedAt: Date.now() };
    if (nextPid > 60000) nextPid = 18000;
    this.running.set(pub.jid, job);
    if (!Number.isFinite(delay)) return; // runs forever
    this.env.later(Math.max(0, delay), () => {
      void this.execute(pub).then((ret) => {
        this.running.delete(pub.jid);
        this.env.deliver(this, ret);
      });
    });
  }

  private implementation(fun: string): Builtin | undefined {
    const override = this.spec.overrides?.[fun] ?? this.env.overrides.get(fun);
    if (override && this.functionNames().includes(fun)) {
      return { name: fun.split('.').pop() ?? fun, varargs: true, varkw: true, run: (_b, call) => override(call) };
    }
    if (!this.functionNames().includes(fun)) return undefined;
    return BUILTINS[fun];
  }

  /** Run the function and build the return as the minion's _thread_return does (without cmd/id, which the master adds). */
  async execute(pub: PubLoad): Promise<Record<string, unknown>> {
    const fun = pub.fun;
    const ret: Record<string, unknown> = { success: false };
    const impl = this.implementation(fun);
    if (!impl) {
      ret.return = `'${fun}' is not available.`;
      ret.retcode = 1;
      ret.out = 'nested';
    } else {
      let retcode = 0;
      try {
        const { args, kwargs } = loadArgsAndKwargs(impl, pub.arg, pub);
        const isOverride = !BUILTINS[fun] || impl !== BUILTINS[fun];
        const call: MinionCall = {
          minion: this,
          fun,
          args,
          kwargs,
          pub,
          setRetcode: (code) => {
            retcode = code;
          },
          sleep: (ms) => this.env.sleep(ms),
        };
        const bound = isOverride ? { values: {}, rest: args, extra: kwargs } : bindCall(impl, args, kwargs);
        ret.return = await impl.run(bound, call);
        ret.retcode = retcode;
        ret.success = retcode === 0;
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (err instanceof SaltInvocationError) ret.return = `ERROR executing '${fun}': ${msg}`;
        else if (err instanceof CommandExecutionError) ret.return = `ERROR: ${msg}`;
        else if (err instanceof PyTypeError) ret.return = `Passed invalid arguments to ${fun}: ${msg}\n`;
        else ret.return = `The minion function caused an exception: ${fakeTraceback(`salt/modules/${fun.split('.')[0]}.py`, err)}`;
        ret.out = 'nested';
        ret.retcode = 1;
      }
    }
    ret.jid = pub.jid;
    ret.fun = fun;
    ret.fun_args = pub.arg;
    if ('metadata' in pub) ret.metadata = pub.metadata;
    if ('user' in pub) ret.user = pub.user;
    return ret;
  }
}
