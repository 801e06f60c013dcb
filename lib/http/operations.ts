/**
 * What an operator gets of each request besides its answer: its id (sent
 * back, and on its log lines), its metrics, an audit record per item, and
 * the client-certificate check of `ssl_allowed_cn`. Built once per handler
 * from its options; the handler asks it at the start of each request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NetapiClient } from '../clients/netapi.js';
import { withFields, type Logger } from '../log.js';
import { formatAudit, type AuditRecord } from './audit.js';
import { certificateAllowed, verifiedCn } from './client-cert.js';
import type { ItemScope } from './item-run.js';
import { HandlerMetrics } from './metrics.js';
import { REQUEST_ID_HEADER, requestIds } from './request-id.js';

/** The handler options it reads (lib/http/handler.ts: HandlerOptions). */
export interface OperationsOptions {
  auditLog?: boolean | ((record: AuditRecord) => void);
  auditArgs?: boolean;
  allowedCn?: readonly string[];
}

export class Operations {
  readonly metrics: HandlerMetrics;
  private readonly audit: ((record: AuditRecord) => void) | undefined;
  private readonly auditArgs: boolean;
  private readonly allowedCn: ReadonlySet<string> | undefined;

  constructor(options: OperationsOptions, logger: Logger, netapi: NetapiClient, inFlight: () => number, unsentBytes?: () => number) {
    this.metrics = new HandlerMetrics({
      inFlight,
      unsentBytes,
      transport: () => netapi.transportStats(),
      notReady: () => netapi.notReady(),
    });
    const { auditLog } = options;
    this.audit = typeof auditLog === 'function' ? auditLog : auditLog ? (r) => logger.info(formatAudit(r)) : undefined;
    this.auditArgs = options.auditArgs ?? false;
    if (options.allowedCn !== undefined && !Array.isArray(options.allowedCn)) throw new RangeError('allowedCn must be a list of names');
    this.allowedCn = options.allowedCn?.length ? new Set(options.allowedCn) : undefined;
  }

  /** A request starts: its id on its answer (refusals included), its metrics watched, its logger. */
  begin(req: IncomingMessage, res: ServerResponse, logger: Logger): { id: string; log: Logger } {
    const ids = requestIds(req);
    res.setHeader(REQUEST_ID_HEADER, ids.id);
    this.metrics.watch(res);
    return { id: ids.id, log: withFields(logger, { request_id: ids.id, trace_id: ids.traceId }) };
  }

  /** `ssl_allowed_cn` lets this request's certificate in (or there is no list). */
  certificateAllowed(req: IncomingMessage): boolean {
    return certificateAllowed(req, this.allowedCn);
  }

  /** What the items of a POST share: who sent it, where its audit records and log lines go. */
  itemScope(req: IncomingMessage, address: string, requestId: string, logger: Logger): ItemScope {
    return { requestId, address, cn: verifiedCn(req), auditArgs: this.auditArgs, metrics: this.metrics, audit: this.audit, logger };
  }
}

export function operationsFor(
  options: OperationsOptions,
  logger: Logger,
  netapi: NetapiClient,
  inFlight: () => number,
  unsentBytes?: () => number,
): Operations {
  return new Operations(options, logger, netapi, inFlight, unsentBytes);
}
