/**
 * One lowstate item of a request, run (or refused) and then told: its audit
 * record (lib/http/audit.ts) and its metrics (lib/http/metrics.ts), with the
 * job and minions its client reported as it ran.
 */
import { performance } from 'node:perf_hooks';
import type { ItemReport } from '../clients/context.js';
import type { AnswerSink } from '../clients/answer-sink.js';
import type { PreparedItem } from '../clients/netapi.js';
import { isClientName } from '../clients/table.js';
import { isPlainObject } from '../objects.js';
import type { Logger } from '../log.js';
import { auditRecord, itemStatus, type AuditRecord, type AuditScope } from './audit.js';
import type { HandlerMetrics } from './metrics.js';

/** What the items of one request share. */
export interface ItemScope extends AuditScope {
  readonly metrics: HandlerMetrics;
  readonly audit: ((record: AuditRecord) => void) | undefined;
  /** The request's logger (its lines name the request). */
  readonly logger: Logger;
}

/** Run `item` (whose lowstate is `low`); told once it ended, however it ended. `report` is filled in as it runs. */
export async function runItem(
  scope: ItemScope,
  item: PreparedItem,
  low: unknown,
  signal: AbortSignal | undefined,
  sink?: AnswerSink,
  report: ItemReport = {},
): Promise<unknown> {
  const start = performance.now();
  let failure: { err: unknown } | undefined;
  try {
    return await item.run(signal, sink, report, scope.logger);
  } catch (err) {
    failure = { err };
    throw err;
  } finally {
    itemEnded(scope, low, report, failure ? itemStatus(failure.err) : 200, start);
  }
}

/** An item that ended with `status` (a refused one: never ran, `report` empty). */
export function itemEnded(scope: ItemScope, low: unknown, report: ItemReport, status: number, start = performance.now()): void {
  const client = isPlainObject(low) && isClientName(low.client) ? low.client : 'unknown';
  scope.metrics.item(client, status, report);
  if (scope.audit) scope.audit(auditRecord(scope, low, report, status, performance.now() - start));
}
