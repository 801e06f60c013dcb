/**
 * A Salt master double for tests: the real master's request channel (a
 * ZeroMQ ROUTER on a free loopback port) and event bus (a unix socket
 * `<sockDir>/master_event_pub.ipc`, or TCP), answering and emitting exactly
 * what the captures in ../shared/salt-wire/ show, plus minions it plays.
 * It is built on `zeromq`, `node:net` and lib/salt/codec.ts only, never on
 * our own transport (which it exists to test).
 *
 * ## Use
 *
 *     const master = await startMaster({ minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }] });
 *     t.after(() => master.close());
 *     loadMasterConfig(master.configPath) ... // or master.address / master.eventTarget
 *
 * ## Options (`new SaltMasterDouble(options)` / `startMaster(options)`; all optional)
 *
 * - `minions: MinionSpec[]` — accepted minion keys, default `[{ id: 'minion1' }]` (as in reqserver.json).
 *   `MinionSpec` (test/support/minions.ts): `{ id, delayMs?, findJobDelayMs?, silent?, functions?, overrides?, grains? }`:
 *   `delayMs` (default 0) every job runs that long before returning (`Infinity`: never returns but
 *   find_job keeps answering "running"); `findJobDelayMs` (default 0) for saltutil.find_job and
 *   saltutil.running;
 *   `silent` = accepted key, dead minion (listed in publish replies, never returns, never answers
 *   find_job); `functions` = the names it has (default: all built-ins; find_job, saltutil.running and
 *   sys.list_functions always); `overrides: { 'mod.fun': (call) => result }` per-minion results.
 *   Built-ins: test.ping, test.echo, test.arg, test.kwarg, test.version, test.outputter, test.sleep,
 *   test.retcode, test.exception, cmd.run (deterministic: `echo X`, `id`, `hostname`, `true`, `false`,
 *   `exit N`, else "not found" with retcode 127), grains.items, grains.get, sys.list_functions,
 *   saltutil.find_job, saltutil.running. Unknown function → `'x.y' is not available.`, success
 *   false, retcode 1, out 'nested' (Salt 3007; older minions said 254).
 * - `users: Record<name, { password, permissions }>` — the eauth table, default `defaultUsers()`:
 *   `saltdev`/`x` with `['.*', '@runner', '@wheel', '@jobs']`, `limited`/`x` with `['test.*']`.
 *   Permissions are Salt's external_auth entries (see test/support/eauth.ts for the model).
 * - `eauthBackends: string[]` — enabled eauth names, default `['auto', 'pam']`. Unknown users
 *   authenticate (with no permissions) only under `auto`, as on the captured master.
 * - `keys: { pre?, rejected?, denied? }` — other key states for the key.* wheel functions.
 * - `ipcMode: 'ipc' | 'tcp'` — event bus on the unix socket (default) or TCP 127.0.0.1.
 * - `transport: 'zeromq' | 'tcp' | 'ws'` — the request server's transport (default zeromq; the others
 *   from test/support/master-transports.ts), written to the config as `transport`. The running
 *   master's marker in sockDir follows it: workers.ipc (zeromq) or publish_pull.ipc (tcp, ws).
 * - `tls: { key, cert, ... }` — tcp/ws only: the request server speaks TLS with these node:tls
 *   server options; set the config's `ssl` yourself (`config: { ssl: {...} }`).
 * - `sleepScale: number` — test.sleep N (minion) and runner test.sleep take N × 1000 × sleepScale ms; default 0.05.
 * - `tokenExpireS` (default 43200), `authFailDelayMs` (default 0; the real master's time_auth ≈ 1 s).
 * - `config: Record<string, unknown>` — extra/overriding master config options written to the file
 *   (e.g. `{ timeout: 0.1, netapi_enable_clients: ['local'] }`).
 * - `noiseIntervalMs` — emit a noise event that often while running.
 * - `busChunkBytes` — write bus frames in slices of this size, a tick apart (exercises stream parsers).
 * - `runnerDelayMs` — wait before a runner job starts (after the reply), default 0.
 * - `publishReplyDelayMs` — the publish reply leaves this long after the minions got the job (default 0):
 *   with minions faster than it, their returns are on the bus before the reply names the job.
 * - `syndics: SyndicSpec[]` — play a master of masters (test/support/syndic.ts): each syndic's key is
 *   accepted here (a silent minion), its minions are not; the config gets `order_masters: True` and
 *   `syndic_wait: 0.3` (Salt's default is 5 s) unless `config` says otherwise. A publish naming no
 *   minion of this master is published all the same; each syndic forwards it, its events and returns.
 * - `keepLog` — default true; false keeps no copy of requests, events or returns (`requests`, `events`,
 *   `jobs[].returns` stay empty): a bench fleet of 20,000 minions or of 1 MiB returns costs the double
 *   no memory per event.
 *
 * ## Properties
 *
 * - `dir` temp dir (mkdtemp), `sockDir` (`<dir>/sock`), `configPath` (`<dir>/master`, YAML),
 *   `retPort`, `address` (`tcp://127.0.0.1:<retPort>`), `eventPath` (`<sockDir>/master_event_pub.ipc`),
 *   `pubPort` (ipcMode tcp), `eventTarget` (`{path}` or `{host, port}` for net.connect), `workersIpcPath`
 *   (the transport's marker: workers.ipc or publish_pull.ipc), `transport`, `requestServer` (tcp/ws: its
 *   connection counts),
 *   `running`, `config` (the options last written to configPath; change them with `writeConfig(extra)`),
 *   `keys` (`{pre, rejected, denied}`: Sets of key ids besides the accepted minions).
 * - Observability: `requests` (every request: `{cmd, load, at, reply}` — the load as received,
 *   credentials included), `counts` (requests by cmd), `events` (every event fired:
 *   `{tag, data}`), `executed` (what actually ran: `{kind: 'publish'|'runner'|'wheel', fun, jid, user}`),
 *   `itemRequests` (`requests` without the server's runner-signature lookups),
 *   `neverStarted` (runner/wheel jobs that died before `new`, as Salt's do: `{fun, jid, error}`),
 *   `jobs` (published jobs and their returns), `busClientCount`.
 * - Behaviour switches: `answerRequests` (false: receive and log, never reply), `replyDelayMs`.
 * - Tables: `minions` (id → Minion; `minion(id).spec` is mutable), `eauth` (users, tokens),
 *   `runnerFunctions`, `wheelFunctions` (Map name → MasterFunction), `minionFunctions`
 *   (Map name → MinionFunction, master-wide overrides).
 *
 * ## Methods
 *
 * - `start()` binds (first time: free ports, temp dir, config file), creates workers.ipc (publish_pull.ipc).
 *   Again after `stop()`: the SAME ports and paths.
 * - `stop()` closes the ROUTER and every bus client, removes workers.ipc and the bus socket,
 *   cancels minion jobs in flight and timers. `stop({ leaveSockets: true })`: as Salt's own
 *   salt-master stopped by SIGTERM, which leaves its .ipc files in sock_dir behind (seen on 3007.1
 *   and 3006.0 by test/real-master-readyz.test.ts): the files stay, nothing answers on them.
 *   `close()` = stop() + remove the temp dir.
 * - `fire(tag, data)` emit any event (adds `_stamp`); `emitNoise(kind?)` one unrelated event
 *   (`minion/refresh/<id>`, `salt/auth`, `salt/minion/<id>/start`, a scheduled mine.update return,
 *   a scheduled job return, `salt/presence/present`, `salt/key`, another job's legacy `<jid>` event);
 *   `startNoise(ms)` / `stopNoise()`.
 * - `addMinion(spec)`, `removeMinion(id)`, `minion(id)`.
 * - `waitForBusClients(n, timeoutMs)`; `nextRequest(cmd?, timeoutMs)` the next request received (of that cmd;
 *   the server's runner-signature lookups aside);
 *   `clearLog()` empties requests, counts, events, executed; `writeConfig(extra?)` merges `extra` into the
 *   config options (kept across restarts) and rewrites the file. `close()` is final (no start() after it).
 * - EventEmitter: 'request' (record), 'event' ({tag, data}), 'busClient' (count).
 *
 * ## Request channel (ClearFuncs)
 *
 * `publish`, `runner`, `wheel`, `mk_token`, `get_token`, `ping` (echoes the load); any other cmd → `{}`.
 * Replies are packed as the master packs them (msgpack's old spec: str16 for 32-255-byte strings,
 * see `encodeReply`); bus frames as the bus does (bin body, str8), see `packEvent`.
 * Not msgpack → `'bad load'`; not a map with a map `load` → `'payload and load must be a dict'`;
 * `enc` other than `clear` → `'bad load'` (the double has no AES); a handler failing (e.g. a
 * publish without `fun`) → `'Some exception handling minion payload'`, as the master's transport.
 * Credential errors: publish → `AuthenticationError` "Authentication error occurred." when
 * authentication fails (wrong password, unknown or expired token, no credentials), else
 * `AuthorizationError` "Authorization error occurred." (not permitted, unknown user under
 * `auto`); runner/wheel → `EauthAuthenticationError` / `TokenAuthenticationError` texts of
 * salt/auth (`... occurred for user <name>.`, or `Authentication failure of type "token"
 * occurred.` for an unknown token), `UserAuthenticationError` without credentials. A refused
 * publish also fires `salt/job/<jid>/error` as the master does (`salt/job//error` for jid '').
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Router } from 'zeromq';
import type tls from 'node:tls';
import { startTcpRequestServer, startWsRequestServer, type IncomingRequest, type TransportServer } from './master-transports.js';
import { stringify } from 'yaml';
import { decode } from '../../lib/salt/codec.js';
import { Eauth, defaultUsers, prepAuthInfo, publishAuthorized, specCheck, type EauthUser } from './eauth.js';
import {
  defaultRunnerFunctions,
  defaultWheelFunctions,
  type JobRecord,
  type MasterCallContext,
  type MasterFunction,
} from './master-functions.js';
import { encodeReply, newJid, packEvent, saltStamp } from './master-wire.js';
import { Minion, type MinionFunction, type MinionSpec, type PubLoad } from './minions.js';
import { CommandExecutionError, PyTypeError, bindCall, fakeTraceback, formatCall, isPlainObject } from './python-call.js';
import { checkMinions, type TargetableMinion } from './targeting.js';
import { SyndicDouble, type SyndicSpec } from './syndic.js';

export type { MinionSpec, MinionFunction, MinionCall, PubLoad } from './minions.js';
export type { SyndicSpec } from './syndic.js';
export type { EauthUser, Permission, TokenData } from './eauth.js';
export type { MasterFunction, MasterCallContext, JobRecord } from './master-functions.js';
export { defaultUsers } from './eauth.js';
export { SaltInvocationError, CommandExecutionError } from './python-call.js';

/** Every client of CLIENTS in lib/clients/netapi.ts: the config file enables them all. */
export const ALL_NETAPI_CLIENTS = [
  'local',
  'local_async',
  'local_subset',
  'local_batch',
  'runner',
  'runner_async',
  'wheel',
  'wheel_async',
  'ssh',
];

export interface MasterDoubleOptions {
  minions?: MinionSpec[];
  users?: Record<string, EauthUser>;
  eauthBackends?: string[];
  keys?: { pre?: string[]; rejected?: string[]; denied?: string[] };
  ipcMode?: 'ipc' | 'tcp';
  transport?: 'zeromq' | 'tcp' | 'ws';
  tls?: tls.TlsOptions;
  sleepScale?: number;
  tokenExpireS?: number;
  authFailDelayMs?: number;
  config?: Record<string, unknown>;
  noiseIntervalMs?: number;
  busChunkBytes?: number;
  runnerDelayMs?: number;
  publishReplyDelayMs?: number;
  syndics?: SyndicSpec[];
  keepLog?: boolean;
}

export interface RequestRecord {
  cmd: string;
  /** The clear load exactly as received (credentials included: test-only). */
  load: Record<string, unknown>;
  at: number;
  reply?: unknown;
}

export interface ExecutedRecord {
  kind: 'publish' | 'runner' | 'wheel';
  fun: string;
  jid: string;
  user: string;
}

export type NoiseKind = 'refresh' | 'auth' | 'minion_start' | 'mine' | 'schedule' | 'presence' | 'key' | 'other_job';
const NOISE_KINDS: NoiseKind[] = ['refresh', 'mine', 'auth', 'schedule', 'minion_start', 'presence', 'key', 'other_job'];

const NO_REPLY = Symbol('no reply');
const HANDLER_FAILED = 'Some exception handling minion payload';

interface BusClient {
  socket: net.Socket;
  queue: Promise<void>;
}

export class SaltMasterDouble extends EventEmitter {
  dir = '';
  sockDir = '';
  configPath = '';
  retPort = 0;
  pubPort = 0;
  running = false;

  readonly requests: RequestRecord[] = [];
  readonly counts: Record<string, number> = {};
  readonly events: Array<{ tag: string; data: unknown }> = [];
  readonly executed: ExecutedRecord[] = [];
  /** Runner/wheel jobs whose process died before firing `new` (unknown function, arguments format_call can't bind). */
  readonly neverStarted: Array<{ fun: string; jid: string; error: string }> = [];
  readonly jobs = new Map<string, JobRecord>();
  readonly minions = new Map<string, Minion>();
  /** The syndics under this master (`syndics`), by id. */
  readonly syndics = new Map<string, SyndicDouble>();
  readonly keys: { pre: Set<string>; rejected: Set<string>; denied: Set<string> };
  readonly eauth: Eauth;
  readonly runnerFunctions: Map<string, MasterFunction> = defaultRunnerFunctions();
  readonly wheelFunctions: Map<string, MasterFunction> = defaultWheelFunctions();
  readonly minionFunctions = new Map<string, MinionFunction>();
  config: Record<string, unknown> = {};

  answerRequests = true;
  replyDelayMs = 0;

  private extraConfig: Record<string, unknown>;
  private readonly ipcMode: 'ipc' | 'tcp';
  private readonly sleepScale: number;
  private router?: Router;
  /** tcp/ws: the request server, while running. */
  requestServer?: TransportServer;
  readonly transport: 'zeromq' | 'tcp' | 'ws';
  private sendChain: Promise<unknown> = Promise.resolve();
  private bus?: net.Server;
  private readonly busClients = new Set<BusClient>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private generation = 0;
  private readonly keepLog: boolean;
  private noiseTimer?: NodeJS.Timeout;
  private noiseTurn = 0;

  constructor(private readonly options: MasterDoubleOptions = {}) {
    super();
    this.ipcMode = options.ipcMode ?? 'ipc';
    this.transport = options.transport ?? 'zeromq';
    this.extraConfig = { ...(options.config ?? {}) };
    this.sleepScale = options.sleepScale ?? 0.05;
    this.keepLog = options.keepLog ?? true;
    this.keys = {
      pre: new Set(options.keys?.pre ?? []),
      rejected: new Set(options.keys?.rejected ?? []),
      denied: new Set(options.keys?.denied ?? []),
    };
    for (const spec of options.minions ?? [{ id: 'minion1' }]) this.addMinion(spec);
    for (const spec of options.syndics ?? []) this.addSyndic(spec);
    this.eauth = new Eauth({
      users: options.users ?? defaultUsers(),
      backends: options.eauthBackends ?? ['auto', 'pam'],
      tokenExpireS: options.tokenExpireS ?? 43200,
      failDelayMs: options.authFailDelayMs ?? 0,
      sleep: (ms) => this.sleep(ms),
    });
  }

  get address(): string {
    return `tcp://127.0.0.1:${this.retPort}`;
  }

  get eventPath(): string {
    return path.join(this.sockDir, 'master_event_pub.ipc');
  }

  /** Where a subscriber connects (`net.connect(master.eventTarget)`). */
  get eventTarget(): { path: string } | { host: string; port: number } {
    return this.ipcMode === 'tcp' ? { host: '127.0.0.1', port: this.pubPort } : { path: this.eventPath };
  }

  /** The socket file a running master of this transport has in sockDir (what _is_master_running looks at). */
  get workersIpcPath(): string {
    return path.join(this.sockDir, this.transport === 'zeromq' ? 'workers.ipc' : 'publish_pull.ipc');
  }

  get busClientCount(): number {
    return this.busClients.size;
  }

  minion(id: string): Minion | undefined {
    return this.minions.get(id);
  }

  addMinion(spec: MinionSpec): Minion {
    const minion = new Minion(spec, {
      later: (ms, fn) => this.later(ms, fn),
      sleep: (ms) => this.sleep(ms),
      sleepScale: this.options.sleepScale ?? 0.05,
      overrides: this.minionFunctions,
      deliver: (m, ret) => this.minionReturn(m.id, ret),
    });
    this.minions.set(spec.id, minion);
    this.acceptedList = undefined;
    return minion;
  }

  /** A syndic: its key accepted here (it runs no jobs: a silent minion), its minions behind it. */
  private addSyndic(spec: SyndicSpec): void {
    this.addMinion({ id: spec.id, silent: true });
    const syndic = new SyndicDouble(spec, {
      fire: (tag, data) => this.fire(tag, data),
      later: (ms, fn) => this.later(ms, fn),
      sleep: (ms) => this.sleep(ms),
      sleepScale: this.sleepScale,
      overrides: this.minionFunctions,
      cachedir: () => path.join(this.dir, 'cache'),
      record: (jid, id, data) => {
        if (this.keepLog) this.jobs.get(jid)?.returns.set(id, data);
      },
    });
    this.syndics.set(spec.id, syndic);
  }

  /** The config says `order_masters` (salt/master.py: publish without minions, `to` and auth_list in the publish event). */
  private get ordersMasters(): boolean {
    return this.config.order_masters === true;
  }

  removeMinion(id: string): void {
    this.minions.delete(id);
    this.acceptedList = undefined;
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.running) return;
    if (!this.dir) {
      this.dir = await mkdtemp(path.join(os.tmpdir(), 'salt-master-'));
      this.sockDir = path.join(this.dir, 'sock');
      this.configPath = path.join(this.dir, 'master');
      await mkdir(this.sockDir, { recursive: true });
    }
    this.generation++;
    await this.bindRequestServer();
    try {
      await this.listenBus();
    } catch (err) {
      await this.closeRequestServer();
      throw err;
    }
    await writeFile(this.workersIpcPath, '');
    await this.writeConfig();
    this.running = true;
    if (this.options.noiseIntervalMs) this.startNoise(this.options.noiseIntervalMs);
  }

  async stop(options: { leaveSockets?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.stopNoise();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const m of this.minions.values()) m.running.clear();
    for (const s of this.syndics.values()) s.stop();
    await this.closeRequestServer();
    // Forget the bus server first: a subscriber reconnecting while it closes
    // is turned away (close() would otherwise wait for it forever).
    const bus = this.bus;
    this.bus = undefined;
    for (const c of this.busClients) c.socket.destroy();
    this.busClients.clear();
    if (bus) await new Promise<void>((resolve) => bus.close(() => resolve()));
    if (this.ipcMode === 'ipc') await rm(this.eventPath, { force: true });
    if (!options.leaveSockets) return rm(this.workersIpcPath, { force: true });
    // Node unlinks a closed server's socket file: a plain file in its place, where nothing listens.
    if (this.ipcMode === 'ipc') await writeFile(this.eventPath, '');
  }

  async close(): Promise<void> {
    await this.stop();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  /** Write the config (defaults, then options.config, then every `extra` given so far) to configPath as YAML. */
  async writeConfig(extra: Record<string, unknown> = {}): Promise<void> {
    this.extraConfig = { ...this.extraConfig, ...extra };
    const externalAuth: Record<string, unknown> = {};
    for (const backend of this.options.eauthBackends ?? ['auto', 'pam']) {
      externalAuth[backend] = Object.fromEntries(Object.entries(this.eauth.users).map(([name, u]) => [name, u.permissions]));
    }
    this.config = {
      interface: '127.0.0.1',
      ret_port: this.retPort,
      sock_dir: this.sockDir,
      cachedir: path.join(this.dir, 'cache'),
      pki_dir: path.join(this.dir, 'pki'),
      ipc_mode: this.ipcMode,
      transport: this.transport,
      tcp_master_pub_port: this.ipcMode === 'tcp' ? this.pubPort : 4512,
      timeout: 0.25,
      gather_job_timeout: 0.25,
      netapi_enable_clients: ALL_NETAPI_CLIENTS,
      external_auth: externalAuth,
      ...(this.syndics.size > 0 ? { order_masters: true, syndic_wait: 0.3 } : {}),
      ...this.extraConfig,
    };
    await writeFile(this.configPath, stringify(this.config));
  }

  private async bindRequestServer(): Promise<void> {
    if (this.transport === 'zeromq') return this.bindRouter();
    const start = this.transport === 'tcp' ? startTcpRequestServer : startWsRequestServer;
    const server = await start((request) => this.onTransportRequest(server, request), {
      port: this.retPort || undefined,
      tls: this.options.tls,
    });
    this.retPort = server.port;
    this.requestServer = server;
  }

  private async closeRequestServer(): Promise<void> {
    this.router?.close();
    this.router = undefined;
    const server = this.requestServer;
    this.requestServer = undefined;
    await server?.close();
  }

  private async bindRouter(): Promise<void> {
    const router = new Router({ linger: 0 });
    const endpoint = `tcp://127.0.0.1:${this.retPort || '*'}`;
    // A port just released by stop() can take a moment to be bindable again.
    for (let attempt = 0; ; attempt++) {
      try {
        await router.bind(endpoint);
        break;
      } catch (err) {
        if (!this.retPort || attempt >= 100) {
          router.close();
          throw err;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (!this.retPort) this.retPort = Number(/:(\d+)$/.exec(router.lastEndpoint ?? '')?.[1]);
    this.router = router;
    void this.serve(router);
  }

  private async listenBus(): Promise<void> {
    const server = net.createServer((socket) => {
      if (this.bus !== server) {
        socket.destroy(); // accepted while stop() closes this server
        return;
      }
      const client: BusClient = { socket, queue: Promise.resolve() };
      this.busClients.add(client);
      socket.on('error', () => {});
      socket.on('data', () => {}); // subscribers send nothing; ignore whatever comes
      socket.on('close', () => {
        this.busClients.delete(client);
        this.emit('busClient', this.busClients.size);
      });
      this.emit('busClient', this.busClients.size);
    });
    if (this.ipcMode === 'ipc') await rm(this.eventPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (this.ipcMode === 'ipc') server.listen(this.eventPath, () => resolve());
      else server.listen({ host: '127.0.0.1', port: this.pubPort }, () => resolve());
    });
    if (this.ipcMode === 'tcp') this.pubPort = (server.address() as net.AddressInfo).port;
    this.bus = server;
  }

  // ---------------------------------------------------------------- timers

  /** Run fn after ms unless stop() comes first (nothing is scheduled while stopped). */
  private later(ms: number, fn: () => void): void {
    if (!this.running) return;
    const generation = this.generation;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (generation === this.generation) fn();
    }, ms);
    this.timers.add(timer);
  }

  /** A sleep that never ends if the master stops meanwhile (so nothing fires after stop()). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.later(ms, resolve));
  }

  // ---------------------------------------------------------------- event bus

  /** Fire an event on the bus (salt/utils/event.py fire_event: sets `_stamp` on the data). */
  fire(tag: string, data: Record<string, unknown>): void {
    data._stamp = saltStamp();
    const frame = packEvent(tag, data);
    if (this.keepLog) this.events.push({ tag, data: structuredClone(data) });
    for (const client of this.busClients) this.writeFrame(client, frame);
    this.emit('event', { tag, data });
  }

  private writeFrame(client: BusClient, frame: Buffer): void {
    const size = this.options.busChunkBytes;
    if (!size) {
      client.socket.write(frame);
      return;
    }
    client.queue = client.queue.then(async () => {
      for (let i = 0; i < frame.length && !client.socket.destroyed; i += size) {
        client.socket.write(frame.subarray(i, i + size));
        await new Promise((r) => setImmediate(r));
      }
    });
  }

  /** Resolves once at least n subscribers are connected to the bus. */
  waitForBusClients(n = 1, timeoutMs = 2000): Promise<void> {
    if (this.busClients.size >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('busClient', check);
        reject(new Error(`fewer than ${n} bus clients after ${timeoutMs} ms`));
      }, timeoutMs);
      const check = (count: number) => {
        if (count < n) return;
        clearTimeout(timer);
        this.off('busClient', check);
        resolve();
      };
      this.on('busClient', check);
    });
  }

  /** One unrelated event of the kinds a real bus carries (rotating through them unless `kind` is given). */
  emitNoise(kind?: NoiseKind): { tag: string; data: Record<string, unknown> } {
    const k = kind ?? NOISE_KINDS[this.noiseTurn++ % NOISE_KINDS.length];
    const id = this.minions.keys().next().value ?? 'minion1';
    const jid = newJid();
    let tag: string;
    let data: Record<string, unknown>;
    switch (k) {
      case 'refresh':
        [tag, data] = [`minion/refresh/${id}`, { 'Minion data cache refresh': id }];
        break;
      case 'auth':
        [tag, data] = [
          'salt/auth',
          {
            result: true,
            act: 'accept',
            id,
            pub: '-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----',
          },
        ];
        break;
      case 'minion_start':
        tag = `salt/minion/${id}/start`;
        data = { cmd: '_minion_event', data: `Minion ${id} started at ${new Date().toString()}`, id, tag };
        break;
      case 'mine':
        tag = `salt/job/${jid}/ret/${id}`;
        data = {
          cmd: '_return',
          id,
          fun: 'mine.update',
          fun_args: [],
          schedule: '__mine_interval',
          jid,
          pid: 4242,
          return: true,
          retcode: 0,
          success: true,
        };
        break;
      case 'schedule':
        tag = `salt/job/${jid}/ret/${id}`;
        data = {
          cmd: '_return',
          id,
          fun: 'test.ping',
          fun_args: [],
          schedule: 'job1',
          jid,
          pid: 4243,
          return: true,
          retcode: 0,
          success: true,
        };
        break;
      case 'presence':
        [tag, data] = ['salt/presence/present', { present: [...this.minions.values()].filter((m) => !m.spec.silent).map((m) => m.id) }];
        break;
      case 'key':
        [tag, data] = ['salt/key', { id, act: 'accept', result: true }];
        break;
      default:
        [tag, data] = [jid, { minions: [id] }];
    }
    this.fire(tag, data);
    return { tag, data };
  }

  startNoise(intervalMs: number): void {
    this.stopNoise();
    this.noiseTimer = setInterval(() => this.emitNoise(), intervalMs);
  }

  stopNoise(): void {
    if (this.noiseTimer) clearInterval(this.noiseTimer);
    this.noiseTimer = undefined;
  }

  // ---------------------------------------------------------------- request channel

  private async serve(router: Router): Promise<void> {
    try {
      for await (const frames of router) void this.onFrames(router, frames);
    } catch {
      // socket closed by stop()
    }
  }

  private async onFrames(router: Router, frames: Buffer[]): Promise<void> {
    if (frames.length < 2) return;
    // [identity, ...envelope (a REQ's '' or a DEALER's correlation + ''), payload]: echo all but the payload.
    const envelope = frames.slice(0, -1);
    const reply = await this.handle(frames[frames.length - 1]);
    if (reply === NO_REPLY) return;
    if (this.replyDelayMs > 0) await this.holdReply(reply);
    if (router !== this.router || router.closed) return this.replied(reply);
    const bytes = encodeReply(reply);
    this.sendChain = this.sendChain
      .then(() => router.send([...envelope, bytes]))
      .catch(() => {})
      .then(() => this.replied(reply));
  }

  /** A request on the tcp or ws transport (payload already decoded by the transport). */
  private async onTransportRequest(server: TransportServer, request: IncomingRequest): Promise<void> {
    const reply = request.payload === undefined ? this.answer('bad load') : await this.handleMessage(request.payload);
    if (reply === NO_REPLY) return;
    if (this.replyDelayMs > 0) await this.holdReply(reply);
    if (server === this.requestServer) request.reply(reply);
    this.replied(reply);
  }

  /** replyDelayMs: the reply is held back, what waits for it goes on (minions return meanwhile). */
  private holdReply(reply: unknown): Promise<void> {
    this.replied(reply);
    return this.sleep(this.replyDelayMs);
  }

  /**
   * The reply to a request is on its way: what waited for it runs now (a
   * publish's minions get their job). On a master the publisher is another
   * process; here it would hold the reply back by as long as it takes a fleet
   * of 10,000 to get the job.
   */
  private replied(reply: unknown): void {
    if (reply === null || typeof reply !== 'object') return;
    const then = this.afterReply.get(reply);
    if (!then) return;
    this.afterReply.delete(reply);
    this.later(0, then);
  }

  private async handle(payload: Buffer): Promise<unknown> {
    let message: unknown;
    try {
      message = decode(payload);
    } catch {
      return this.answer('bad load');
    }
    return this.handleMessage(message);
  }

  private async handleMessage(message: unknown): Promise<unknown> {
    // msgpackr turns the never-used byte 0xC1 into an object of its own; Python's msgpack refuses it.
    if (message !== null && typeof message === 'object' && message.constructor?.name === 'C1Type') return this.answer('bad load');
    if (!isPlainObject(message) || !isPlainObject(message.load)) return this.answer('payload and load must be a dict');
    if (message.enc !== 'clear') return this.answer('bad load');
    const load = message.load;
    const cmd = typeof load.cmd === 'string' ? load.cmd : String(load.cmd);
    const record: RequestRecord = { cmd, load: this.keepLog ? structuredClone(load) : load, at: Date.now() };
    if (this.keepLog) this.requests.push(record);
    this.counts[cmd] = (this.counts[cmd] ?? 0) + 1;
    this.emit('request', record);
    let reply: unknown;
    try {
      reply = await this.dispatch(cmd, load);
    } catch {
      reply = HANDLER_FAILED;
    }
    record.reply = reply;
    const answer = this.answer(reply);
    if (answer === NO_REPLY) this.replied(reply); // no reply goes out: nothing waits for it
    return answer;
  }

  private answer(reply: unknown): unknown {
    return this.answerRequests ? reply : NO_REPLY;
  }

  private dispatch(cmd: string, load: Record<string, unknown>): unknown {
    switch (cmd) {
      case 'publish':
        return this.publish(load);
      case 'runner':
        return this.runner(load);
      case 'wheel':
        return this.wheel(load);
      case 'mk_token':
        return this.eauth.mkToken(load);
      case 'get_token':
        return 'token' in load ? (this.eauth.getToken(load.token) ?? {}) : false;
      case 'ping':
        return load;
      default:
        return {};
    }
  }

  /** The next request received from now on (of `cmd`, if given). */
  nextRequest(cmd?: string, timeoutMs = 2000): Promise<RequestRecord> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('request', on);
        reject(new Error(`no ${cmd ?? ''} request within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (r: RequestRecord) => {
        if ((cmd && r.cmd !== cmd) || isSignatureLookup(r.load)) return;
        clearTimeout(timer);
        this.off('request', on);
        resolve(r);
      };
      this.on('request', on);
    });
  }

  /**
   * `requests` without the runner-signature lookups salt-rest-wsgi makes once
   * per master start (`salt.cmd sys.runner_argspec`): the requests the items made.
   */
  get itemRequests(): RequestRecord[] {
    return this.requests.filter((r) => !isSignatureLookup(r.load));
  }

  clearLog(): void {
    this.requests.length = 0;
    this.neverStarted.length = 0;
    this.events.length = 0;
    this.executed.length = 0;
    for (const k of Object.keys(this.counts)) delete this.counts[k];
  }

  /** Work that waits for a request's reply to go out, by reply (replied()). */
  private readonly afterReply = new WeakMap<object, () => void>();

  /** What accepted() gave, until a minion is added or removed: a fleet of 10,000 is not listed anew for each publish. */
  private acceptedList: Array<TargetableMinion & { silent: boolean }> | undefined;

  private accepted(): Array<TargetableMinion & { silent: boolean }> {
    this.acceptedList ??= [...this.minions.values()].map((m) => ({ id: m.id, grains: m.grains, silent: !!m.spec.silent }));
    return this.acceptedList;
  }

  // ---------------------------------------------------------------- publish

  /** ClearFuncs.publish. */
  private async publish(load: Record<string, unknown>): Promise<unknown> {
    for (const key of ['user', 'fun', 'tgt', 'arg', 'ret', 'tgt_type']) {
      if (!(key in load)) throw new Error(`KeyError: '${key}'`);
    }
    const extra = isPlainObject(load.kwargs) ? load.kwargs : {};
    const delimiter = typeof extra.delimiter === 'string' ? extra.delimiter : ':';
    const { minions, missing } = checkMinions(load.tgt, String(load.tgt_type), this.accepted(), delimiter);

    const { authType } = prepAuthInfo(extra);
    const check = await this.eauth.checkAuthentication(extra, authType);
    const refuse = (name: string, message: string) => {
      const err = { error: { name, message } };
      if ('jid' in load) this.fire(`salt/job/${String(load.jid ?? '')}/error`, { ...structuredClone(load), ...err });
      return err;
    };
    if (check.error) return refuse('AuthenticationError', 'Authentication error occurred.');
    if (!publishAuthorized(check.authList, load.fun, load.arg, minions, this.accepted())) {
      return refuse('AuthorizationError', 'Authorization error occurred.');
    }
    load.user = check.username;

    if (minions.length === 0 && !this.ordersMasters) {
      return { enc: 'clear', load: { jid: null, minions, error: `Master could not resolve minions for target ${String(load.tgt)}` } };
    }
    const jid = typeof load.jid === 'string' && load.jid ? load.jid : newJid();
    load.jid = jid;
    this.fire(jid, { minions });
    this.fire(`salt/job/${jid}/new`, {
      jid,
      tgt_type: load.tgt_type,
      tgt: load.tgt,
      user: load.user,
      fun: load.fun,
      arg: load.arg,
      minions,
      missing,
    });
    const pub = this.prepPub(load, extra, delimiter);
    this.fire(`salt/job/${jid}/publish`, this.ordersMasters ? { ...pub, auth_list: check.authList } : { ...pub });
    this.jobs.set(jid, { jid, pub, minions, startedAt: new Date(), returns: new Map() });
    this.executed.push({ kind: 'publish', fun: String(load.fun), jid, user: String(load.user) });
    // The minions get the job once the reply is on its way (or, with
    // publishReplyDelayMs, that long before it). Each gets its own load (a
    // shallow copy: what a minion changes is the top level).
    const deliver = () => {
      for (const id of minions) this.minions.get(id)?.receive({ ...pub });
      for (const syndic of this.syndics.values()) syndic.receive({ ...pub });
    };
    const reply = { enc: 'clear', load: { jid, minions, missing } };
    if (this.options.publishReplyDelayMs) {
      this.later(0, deliver);
      await this.sleep(this.options.publishReplyDelayMs);
    } else this.afterReply.set(reply, deliver);
    return reply;
  }

  /** ClearFuncs._prep_pub: the load the minions receive. */
  private prepPub(load: Record<string, unknown>, extra: Record<string, unknown>, delimiter: string): PubLoad {
    const pub: Record<string, unknown> = { fun: load.fun, arg: load.arg, tgt: load.tgt, jid: load.jid, ret: load.ret };
    if ('master_id' in extra) pub.master_id = extra.master_id;
    if (delimiter !== ':') pub.delimiter = delimiter;
    if ('id' in extra) pub.id = extra.id;
    pub.tgt_type = load.tgt_type;
    if ('to' in load) pub.to = load.to;
    for (const key of ['ret_config', 'metadata', 'module_executors', 'executor_opts', 'ret_kwargs']) {
      if (key in extra) pub[key] = extra[key];
    }
    pub.user = load.user;
    return pub as PubLoad;
  }

  /** The master's _return: a minion's return goes to the job cache and the bus. */
  private minionReturn(id: string, ret: Record<string, unknown>): void {
    const data = { cmd: '_return', id, ...ret };
    const jid = String(ret.jid);
    this.fire(`salt/job/${jid}/ret/${id}`, data);
    if (this.keepLog) this.jobs.get(jid)?.returns.set(id, data);
  }

  // ---------------------------------------------------------------- runner and wheel

  /** Authentication and spec_check shared by runner and wheel; an error reply, or the user name. */
  private async authorizeSpecial(load: Record<string, unknown>, form: 'runner' | 'wheel'): Promise<{ reply: unknown } | { user: string }> {
    const { authType, errName, sensitive } = prepAuthInfo(load);
    const check = await this.eauth.checkAuthentication(load, authType);
    if (check.error) return { reply: { error: check.error } };
    const allowed = specCheck(check.authList, load.fun, load.kwarg ?? {}, form);
    if (!allowed) {
      return {
        reply: { error: { name: errName, message: `Authentication failure of type "${authType}" occurred for user ${check.username}.` } },
      };
    }
    if (typeof allowed === 'object') return { reply: allowed };
    for (const key of sensitive) delete load[key];
    return { user: check.username };
  }

  /** ClearFuncs.runner: reply with the tag at once; the job's events follow. */
  private async runner(load: Record<string, unknown>): Promise<unknown> {
    const auth = await this.authorizeSpecial(load, 'runner');
    if ('reply' in auth) return auth.reply;
    const fun = String(load.fun);
    const jid = newJid();
    const tag = `salt/run/${jid}`;
    this.executed.push({ kind: 'runner', fun, jid, user: auth.user });
    const kwarg = load.kwarg ?? {};
    // A non-dict kwarg kills the master's runner process before it fires anything.
    if (isPlainObject(kwarg)) {
      const low = { ...kwarg, __jid__: jid, __user__: auth.user, __tag__: tag };
      this.later(this.options.runnerDelayMs ?? 0, () => void this.low('runner', fun, low, jid, auth.user));
    }
    return { tag, jid };
  }

  /** ClearFuncs.wheel: runs to completion, replies with the data. */
  private async wheel(load: Record<string, unknown>): Promise<unknown> {
    const auth = await this.authorizeSpecial(load, 'wheel');
    if ('reply' in auth) return auth.reply;
    if (!('fun' in load)) throw new Error("UnboundLocalError: cannot access local variable 'fun'");
    const fun = String(load.fun);
    delete load.fun;
    const jid = newJid();
    const tag = `salt/wheel/${jid}`;
    const data: Record<string, unknown> = { fun: `wheel.${fun}`, jid, tag, user: auth.user };
    this.executed.push({ kind: 'wheel', fun, jid, user: auth.user });
    this.fire(`${tag}/new`, data);
    if (!this.wheelFunctions.has(fun)) {
      // What the captured master answers for a function it doesn't have (wheel_badfun).
      data.return = `Exception occurred in wheel ${fun}: UnboundLocalError: cannot access local variable 'proc_fn' where it is not associated with a value`;
      data.success = false;
    } else {
      // call_func(fun, full_return=True, **clear_load): an inner low() with its own jid and events.
      const inner = await this.low('wheel', fun, { full_return: true, ...load }, newJid(), 'UNKNOWN');
      data.return = inner.return;
      data.success = inner.success;
    }
    this.fire(`${tag}/ret`, data);
    return { tag, data };
  }

  /** salt/client/mixins.py SyncClientMixin.low: run one runner/wheel function, firing `<prefix>/<jid>/new` and `/ret`. */
  private async low(client: 'runner' | 'wheel', fun: string, low: Record<string, unknown>, jid: string, user: string) {
    const tag = `salt/${client === 'runner' ? 'run' : 'wheel'}/${jid}`;
    const data: Record<string, unknown> = { fun: `${client}.${fun}`, jid, user };
    const fn = (client === 'runner' ? this.runnerFunctions : this.wheelFunctions).get(fun);
    let retcode = 0;
    const ctx: MasterCallContext = {
      client,
      fun,
      jid,
      user,
      jobs: this.jobs,
      accepted: () => this.accepted(),
      reached: () => [
        ...this.accepted(),
        ...[...this.syndics.values()].flatMap((s) =>
          [...s.minions.values()].map((m) => ({ id: m.id, grains: m.grains, silent: !!m.spec.silent })),
        ),
      ],
      runnerFunctions: this.runnerFunctions,
      keys: this.keys,
      addMinion: (spec) => void this.addMinion(spec),
      removeMinion: (id) => this.removeMinion(id),
      fire: (t, d) => this.fire(t, d),
      sleep: (ms) => this.sleep(ms),
      sleepScale: this.sleepScale,
      mkToken: (load) => this.eauth.mkToken(load),
      setRetcode: (code) => {
        retcode = code;
      },
    };
    let bound: { args: unknown[]; kwargs: Record<string, unknown> };
    try {
      if (!fn) throw new CommandExecutionError(`'${fun}' is not available.`);
      bound = formatCall(fn, low);
    } catch (err) {
      // Salt fails here before it has opened the job's proc file, and its
      // `finally` (os.remove(proc_fn)) raises UnboundLocalError: the process
      // dies with a traceback in the log and fires neither `new` nor `ret`.
      this.neverStarted.push({ fun, jid, error: String((err as Error).message) });
      return { ...data, return: `Exception occurred in ${client} ${fun}: ${fakeTraceback('salt/client/mixins.py', err)}`, success: false };
    }
    const { args, kwargs } = bound;
    try {
      data.fun_args = [...args, ...(Object.keys(kwargs).length ? [kwargs] : [])];
      this.fire(`${tag}/new`, data);
      try {
        data.return = await fn.run(bindCall(fn, args, kwargs), ctx);
      } catch (err) {
        if (!(err instanceof PyTypeError)) throw err;
        data.return = `\nPassed invalid arguments: ${err.message}\n\nUsage:\n${fn.doc ?? ''}`;
      }
      data.success = retcode === 0;
    } catch (err) {
      data.return = `Exception occurred in ${client} ${fun}: ${fakeTraceback('salt/client/mixins.py', err)}`;
      data.success = false;
    }
    this.fire(`${tag}/ret`, data);
    return data;
  }
}

function isSignatureLookup(load: Record<string, unknown>): boolean {
  const kwarg = load.kwarg as { arg?: unknown[] } | undefined;
  return load.cmd === 'runner' && load.fun === 'salt.cmd' && Array.isArray(kwarg?.arg) && kwarg.arg[0] === 'sys.runner_argspec';
}

/** Create and start a master double. */
export async function startMaster(options: MasterDoubleOptions = {}): Promise<SaltMasterDouble> {
  const master = new SaltMasterDouble(options);
  try {
    await master.start();
  } catch (err) {
    await master.close();
    throw err;
  }
  return master;
}
