/**
 * What a master of masters changes in LocalClient (salt/client/__init__.py,
 * whenever the master config has `order_masters: True`), in one place: the
 * publish, the wait for returns (returns.ts) and the job's events
 * (job-watch.ts) ask this module, and need no branch of their own.
 *
 * On such a master the minions behind a syndic are not in the top master's
 * key list: the publish reply may name none of them (salt/master.py
 * ClearFuncs.publish publishes all the same), and they become known only
 * when the syndic's own master fires the job's `new` event, which the
 * syndic forwards (salt/minion.py SyndicManager._forward_events).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { MasterOptions } from '../salt/config.js';
import type { EventBus, SaltEvent } from '../salt/event-bus.js';

/** Salt's default `syndic_wait` (salt/config/__init__.py DEFAULT_MASTER_OPTS), seconds. */
const DEFAULT_SYNDIC_WAIT_S = 5;

/** The master orders masters (`order_masters: True`). */
export function ordersMasters(opts: MasterOptions): boolean {
  const value = opts.order_masters;
  return value === true || value === 'True' || value === 'true';
}

/**
 * How long a job is waited for at least, and what the find_job round waits
 * more (get_iter_returns: `gather_syndic_wait`, and `timeout_at +=
 * syndic_wait`), ms: the master's `syndic_wait`, 0 on a master that orders none.
 */
export function syndicWaitMs(opts: MasterOptions): number {
  if (!ordersMasters(opts)) return 0;
  const raw = opts.syndic_wait;
  const seconds = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  return Math.round((Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_SYNDIC_WAIT_S) * 1000);
}

/** A publish reply that names no minion still published a job there (_check_pub_data does not short-circuit). */
export function publishesWithoutMinions(opts: MasterOptions): boolean {
  return ordersMasters(opts);
}

/**
 * What the publish load carries for the syndics (LocalClient._prep_pub: the
 * publish's timeout as `to`, seconds; the syndic gives its own master `to` - 1).
 */
export function syndicPublishFields(opts: MasterOptions, timeoutMs: number): { to?: number } {
  return ordersMasters(opts) ? { to: timeoutMs / 1000 } : {};
}

/**
 * `id` is a syndic, not a minion: the master registers each syndic that
 * returned in its syndic_dir (`cachedir`/syndics, salt/master.py
 * _syndic_return), and get_cli_event_returns does not report those as
 * unresponsive minions.
 */
export function isSyndic(opts: MasterOptions, id: string): boolean {
  if (!ordersMasters(opts) || id === '' || id.includes('/') || id === '.' || id === '..') return false;
  return existsSync(path.join(String(opts.cachedir), 'syndics', id));
}

/** One listener per jid of `syndic/<name>/<jid>...` events, per bus. */
type Routes = Map<string, Set<(event: SaltEvent) => void>>;
const routesByBus = new WeakMap<EventBus, Routes>();

/**
 * Hear `syndic/<name>/<jid>` events (and the syndics' forwarded
 * `syndic/<name>/salt/job/<jid>/...`) of job `jid`, as LocalClient
 * subscribes `syndic/.*\/<jid>` on a master of masters. One bus
 * subscription serves every job: an event costs a lookup per segment of its
 * tag, not one per job waited for. Returns the unsubscribe function (a
 * no-op on a master that orders none).
 */
export function watchSyndicEvents(opts: MasterOptions, bus: EventBus, jid: string, listener: (event: SaltEvent) => void): () => void {
  if (!ordersMasters(opts)) return () => {};
  let routes = routesByBus.get(bus);
  if (!routes) {
    const table: Routes = new Map();
    routes = table;
    routesByBus.set(bus, table);
    bus.subscribe('syndic/', (event) => {
      // `syndic/<name>/` then the jid as a whole segment, anywhere after it.
      const parts = event.tag.split('/');
      const seen = new Set<string>();
      for (let i = 2; i < parts.length; i++) {
        const listeners = table.get(parts[i]);
        if (!listeners || seen.has(parts[i])) continue;
        seen.add(parts[i]);
        for (const l of [...listeners]) l(event);
      }
    });
  }
  let listeners = routes.get(jid);
  if (!listeners) {
    listeners = new Set();
    routes.set(jid, listeners);
  }
  listeners.add(listener);
  const table = routes;
  return () => {
    const current = table.get(jid);
    if (!current) return;
    current.delete(listener);
    if (current.size === 0) table.delete(jid);
  };
}
