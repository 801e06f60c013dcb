/**
 * A syndic for the master double: a lower master with minions of its own,
 * and the salt-syndic that links it to the double (the master of masters,
 * `order_masters: True`). The top master has the syndic's key only; the
 * minions behind it are none of its keys. What reaches the top master's bus
 * is what saltenv.sh's TOPOLOGY=syndic shows on Salt 3007.1:
 *
 * - the syndic takes each publish to its master with `int(to) - 1` as that
 *   request's timeout (salt/minion.py Syndic._handle_decoded_payload): a
 *   `to` under 2 s makes it 0, the request times out, and the job never
 *   reaches the minions below (the syndic's log: "Request client send
 *   timedout"); the double drops such a publish (`dropsBelowToS`). Else it
 *   reaches its master, whose events it forwards with the
 *   `syndic/<id>/` pretag (SyndicManager._forward_events): for a job its
 *   master has minions for, `syndic/<id>/<jid>` `{minions}`, then
 *   `salt/job/<jid>/new` (user `root`, the lower master's minions and
 *   missing) and `syndic/<id>/salt/job/<jid>/new`, then the same pair for
 *   `publish`; a job its master has no minion for forwards nothing;
 * - its minions' returns come to the top master through `_syndic_return`:
 *   `salt/job/<jid>/ret/<minion>` with `jid, id, return, retcode, success,
 *   fun_args, fun` (no `cmd`, no `out`: the syndic keeps only those), and the
 *   top master registers the syndic in `<cachedir>/syndics/<id>`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Minion, type MinionFunction, type MinionSpec, type PubLoad } from './minions.js';
import { checkMinions } from './targeting.js';

export interface SyndicSpec {
  /** The syndic's id: its key on the top master. */
  id: string;
  /** The minions of its master (keys accepted there): `silent` ones never answer, as on the master double. */
  minions: MinionSpec[];
  /** How long the syndic takes to forward a publish down and events and returns up, ms (default 5; Salt's syndic_event_forward_timeout is 0.5 s). */
  forwardDelayMs?: number;
  /** A publish whose `to` is under this many seconds is lost on its way down (default 2, as Salt's; the double's scaled timeouts want less). Mutable. */
  dropsBelowToS?: number;
}

/** What the top master double lends its syndics. */
export interface SyndicHost {
  fire(tag: string, data: Record<string, unknown>): void;
  later(ms: number, fn: () => void): void;
  sleep(ms: number): Promise<void>;
  sleepScale: number;
  overrides: Map<string, MinionFunction>;
  /** The top master's cachedir (syndic_dir is `<cachedir>/syndics`). */
  cachedir(): string;
  /** A return reached the top master: its job cache keeps it (jobs.lookup_jid). */
  record(jid: string, id: string, data: Record<string, unknown>): void;
}

/** The keys of a minion's return that the syndic forwards (SyndicManager._process_event). */
const FORWARDED = ['return', 'retcode', 'success', 'fun_args'] as const;

export class SyndicDouble {
  readonly minions = new Map<string, Minion>();

  constructor(
    readonly spec: SyndicSpec,
    private readonly host: SyndicHost,
  ) {
    for (const minionSpec of spec.minions) {
      const minion = new Minion(minionSpec, {
        later: (ms, fn) => host.later(ms, fn),
        sleep: (ms) => host.sleep(ms),
        sleepScale: host.sleepScale,
        overrides: host.overrides,
        deliver: (m, ret) => this.forwardReturn(m.id, ret),
      });
      this.minions.set(minionSpec.id, minion);
    }
  }

  get id(): string {
    return this.spec.id;
  }

  private get delayMs(): number {
    return this.spec.forwardDelayMs ?? 5;
  }

  /** The top master published `pub`: the syndic publishes it on its own master. */
  receive(pub: PubLoad): void {
    if (typeof pub.to === 'number' && pub.to < (this.spec.dropsBelowToS ?? 2)) return;
    this.host.later(this.delayMs, () => this.publishBelow(pub));
  }

  /** Its master's ClearFuncs.publish, as the top master's bus hears of it. */
  private publishBelow(pub: PubLoad): void {
    const accepted = [...this.minions.values()].map((m) => ({ id: m.id, grains: m.grains }));
    const delimiter = typeof pub.delimiter === 'string' ? pub.delimiter : ':';
    const tgtType = String(pub.tgt_type ?? 'glob');
    const { minions, missing } = checkMinions(pub.tgt, tgtType, accepted, delimiter);
    if (minions.length === 0) return; // its master refuses: nothing published, nothing forwarded
    const jid = pub.jid;
    const below: PubLoad = { fun: pub.fun, arg: pub.arg, tgt: pub.tgt, jid, ret: pub.ret, tgt_type: tgtType, user: 'root' };
    const newData = { jid, tgt_type: tgtType, tgt: pub.tgt, user: 'root', fun: pub.fun, arg: pub.arg, minions, missing };
    const pretag = `syndic/${this.id}`;
    this.host.later(this.delayMs, () => {
      this.host.fire(`${pretag}/${jid}`, { minions });
      this.host.fire(`salt/job/${jid}/new`, { ...newData });
      this.host.fire(`${pretag}/salt/job/${jid}/new`, { ...newData });
      this.host.fire(`salt/job/${jid}/publish`, { ...below });
      this.host.fire(`${pretag}/salt/job/${jid}/publish`, { ...below });
    });
    for (const id of minions) this.minions.get(id)?.receive({ ...below });
  }

  /** A minion's return, up through the syndic to the top master's _syndic_return. */
  private forwardReturn(id: string, ret: Record<string, unknown>): void {
    this.host.later(this.delayMs, () => {
      const jid = String(ret.jid);
      const data: Record<string, unknown> = { jid, id };
      for (const key of FORWARDED) if (key in ret) data[key] = ret[key];
      data.fun = ret.fun;
      this.register();
      this.host.fire(`salt/job/${jid}/ret/${id}`, data);
      this.host.record(jid, id, data);
    });
  }

  /** The top master's syndic_dir entry for this syndic (written on its first return). */
  private register(): void {
    const dir = path.join(this.host.cachedir(), 'syndics');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, this.id), '', { flag: 'a' });
  }

  /** The master stopped: its jobs in flight below are forgotten. */
  stop(): void {
    for (const m of this.minions.values()) m.running.clear();
  }
}
