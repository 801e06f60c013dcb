/**
 * The command's side of running in production: the metrics listener
 * (`rest_wsgi: metrics_port`, `metrics_host`: /metrics, /healthz, /readyz,
 * never on the API's port) and where the audit lines go (`audit_log: FILE`,
 * reopened on SIGHUP for logrotate; else the log).
 */
import http from 'node:http';
import { closeSync, createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { RestWsgiHandler } from '../lib/http/handler.js';
import { auditFields, auditJson, formatAudit, type AuditRecord } from '../lib/http/audit.js';
import type { CommandLogger, LogFormat } from '../lib/log.js';

/** The metrics listener, if metrics_port is set; a port it can't have is fatal, as the API's is. */
export function serveMetrics(values: Record<string, unknown>, handler: RestWsgiHandler, logger: CommandLogger): http.Server | undefined {
  const port = values.metrics_port as number | undefined;
  if (port === undefined) return undefined;
  const host = values.metrics_host as string;
  const server = http.createServer(handler.metricsHandler);
  server.keepAliveTimeout = 5000;
  server.on('error', (err: NodeJS.ErrnoException) => {
    logger.error(`cannot listen for metrics on ${host}:${port}: ${err.code ?? err.message}`);
    handler.close();
    process.exit(1);
  });
  server.listen(port, host, () => {
    const where = server.address() as { address: string; port: number };
    const shown = where.address.includes(':') ? `[${where.address}]` : where.address;
    logger.info(`serving metrics at http://${shown}:${where.port}/metrics (and /healthz, /readyz)`);
  });
  return server;
}

/** Stop the metrics listener at once on shutdown: a load balancer's probe sees it go. */
export function stopMetrics(server: http.Server | undefined): void {
  if (!server) return;
  server.close();
  server.closeAllConnections();
}

/** An audit line is in its file at most this long after its item ended, ms. */
const AUDIT_FLUSH_MS = 20;
const AUDIT_FLUSH_BYTES = 64 * 1024;

/** Where audit records go: a file of their own (`audit_log`), else the log at level info. */
export class AuditSink {
  private stream: WriteStream | undefined;
  /**
   * The lines of the last AUDIT_FLUSH_MS, written together: a write each was
   * a file write each, most of what an audit line cost (npm run bench --
   * --only ops-cost). Written at once past AUDIT_FLUSH_BYTES, on SIGHUP and
   * on close.
   */
  private pending = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string | undefined,
    private readonly format: LogFormat,
    private readonly logger: CommandLogger,
  ) {
    if (path === undefined) return;
    // Fatal at start, as a config mistake is: not an error line per item later.
    try {
      closeSync(openSync(path, 'a', 0o640));
    } catch (err) {
      throw new Error(`cannot open the audit log ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    this.stream = this.open();
  }

  readonly write = (record: AuditRecord): void => {
    if (!this.stream) {
      this.logger.entry('audit', auditFields(record));
      return;
    }
    this.pending += `${this.format === 'json' ? auditJson(record) : formatAudit(record)}\n`;
    if (this.pending.length >= AUDIT_FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(this.flush, AUDIT_FLUSH_MS);
  };

  private readonly flush = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending === '') return;
    this.stream?.write(this.pending);
    this.pending = '';
  };

  /** SIGHUP: the file opened again by its name (logrotate moved the old one away). */
  reopen(): void {
    if (this.path === undefined) return;
    this.flush(); // the lines before the signal go to the file they were made for
    const old = this.stream;
    this.stream = this.open();
    old?.end();
    this.logger.info(`SIGHUP: reopened the audit log ${this.path}`);
  }

  close(): void {
    this.flush();
    this.stream?.end();
  }

  private open(): WriteStream {
    const stream = createWriteStream(this.path as string, { flags: 'a', mode: 0o640 });
    stream.on('error', (err: NodeJS.ErrnoException) => this.logger.error(`audit log ${this.path}: ${err.code ?? err.message}`));
    return stream;
  }
}
