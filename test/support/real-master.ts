/**
 * The real-master suite's shared pieces: which real Salt master (env
 * SALT_REAL_MASTER_CONFIG, one set up by saltenv.sh; .ci/real-masters starts
 * four), whether Python's rest_wsgi on it can be compared with (env
 * SALT_REAL_REST_WSGI_URL; not on TRANSPORT=ws, where Salt's own netapi
 * modules can't see the master), a request to that rest_wsgi, answers made
 * comparable (jids, times, tokens), and a watch on the master's event bus
 * that tells whether a request ran anything.
 */
import { loadMasterConfig, type MasterOptions } from '../../lib/salt/config.js';
import { EventBus, eventBusOptions } from '../../lib/salt/event-bus.js';

export const SALTDEV = { eauth: 'auto', username: 'saltdev', password: 'x' };
export const LIMITED = { eauth: 'auto', username: 'limited', password: 'x' };

export interface RealMaster {
  config: string;
  opts: MasterOptions;
  transport: string;
  /** Python's rest_wsgi on the same master, when it can be compared with. */
  python?: string;
  /** Why there is no comparison with Python's rest_wsgi. */
  pythonSkip?: string;
  /** The Salt version CI set this master up from (env SALT_REAL_EXPECT_VERSION). */
  expectVersion?: string;
}

/** Why the real-master cases skip, or undefined when a real master is configured. */
export const REAL_SKIP = process.env.SALT_REAL_MASTER_CONFIG
  ? undefined
  : 'SALT_REAL_MASTER_CONFIG is not set: no real Salt master (.ci/real-masters starts them from ../shared/salt-src with ../shared/salt-env/saltenv.sh)';

/** Python's rest_wsgi on the master of that config (env SALT_REAL_REST_WSGI_URL), or why it can't be compared with. */
export function pythonRestWsgi(opts: MasterOptions): { url?: string; skip?: string } {
  const url = process.env.SALT_REAL_REST_WSGI_URL || undefined;
  if (!url) return { skip: 'SALT_REAL_REST_WSGI_URL is not set: no comparison with Python rest_wsgi' };
  if (opts.transport === 'ws')
    return {
      skip: "TRANSPORT=ws: Salt's own rest_* modules can't see a ws master (they answer 503/500): no comparison with Python rest_wsgi",
    };
  return { url };
}

/** The configured real master; call only when REAL_SKIP is undefined. */
export function realMaster(): RealMaster {
  const config = String(process.env.SALT_REAL_MASTER_CONFIG);
  const opts = loadMasterConfig(config);
  const { url, skip } = pythonRestWsgi(opts);
  return {
    config,
    opts,
    transport: opts.transport,
    python: url,
    pythonSkip: skip,
    expectVersion: process.env.SALT_REAL_EXPECT_VERSION || undefined,
  };
}

export interface PythonReply {
  status: number;
  json: unknown;
}

/** POST the items to Python's rest_wsgi. */
export async function postPython(url: string, items: unknown[]): Promise<PythonReply> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(items) });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // Python's rest_wsgi answers some failures as plain text: compared as such.
  }
  return { status: res.status, json };
}

const TIME_KEYS = new Set(['start', 'expire', '_stamp']);

/**
 * An answer with what differs between two runs of the same request replaced:
 * jids (20 digits) by "JID", token-like hex strings by "TOKEN", the times of
 * tokens and jobs (`start`, `expire`, `_stamp`) by "TIME".
 */
export function comparable(v: unknown): unknown {
  if (typeof v === 'string') {
    if (/^[0-9a-f]{40,}$/.test(v)) return 'TOKEN';
    return v.replace(/\d{20}/g, 'JID');
  }
  if (Array.isArray(v)) return v.map(comparable);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k.replace(/\d{20}/g, 'JID')] = TIME_KEYS.has(k) ? 'TIME' : comparable(x);
    return out;
  }
  return v;
}

/** A unique string to put in a request's arguments, to find it again in the master's events. */
export function marker(what: string): string {
  return `${what}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Every `salt/` event of the master's bus while it runs. `ran(s)` lists the
 * tags of the job events (`new`, `ret`) whose data holds `s`: a job that ran.
 * A refused publish fires `salt/job/<jid>/error` with its load: not a run.
 */
export class EventWatch {
  private readonly bus: EventBus;
  private readonly seen: Array<{ tag: string; text: string }> = [];

  constructor(opts: MasterOptions) {
    this.bus = new EventBus(eventBusOptions(opts));
    this.bus.on('error', () => {});
  }

  async start(): Promise<void> {
    this.bus.start();
    await this.bus.ready(10_000);
    this.bus.subscribe('salt/', (event) =>
      this.seen.push({ tag: event.tag, text: JSON.stringify(event.data, (_k, x) => (typeof x === 'bigint' ? String(x) : x)) ?? '' }),
    );
  }

  ran(s: string): string[] {
    return this.seen.filter((e) => /\/(new|ret)(\/|$)/.test(e.tag) && e.text.includes(s)).map((e) => e.tag);
  }

  close(): void {
    this.bus.close();
  }
}
