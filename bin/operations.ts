/**
 * The command's side of running in production: the metrics listener
 * (`rest_wsgi: metrics_port`, `metrics_host`: /metrics, /healthz, /readyz,
 * never on the API's port) and where the audit lines go (`audit_log: FILE`,
 * reopened on SIGHUP for logrotate; else the log).
 */
import http from 'node:http';
import { closeSync, openSync, writeSync } from 'node:fs';
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
  private fd: number | undefined;
  /**
   * The lines of the last AUDIT_FLUSH_MS, written together (a write each was
   * most of what an audit line cost), written at once past
   * AUDIT_FLUSH_BYTES, on SIGHUP and on close. Each line goes into this
   * buffer as UTF-8 when it is made: held as text until the flush, the
   * lines outlived the young generation and were flattened and encoded at
   * once, a third of a line's cost (npm run bench -- --only ops-cost
   * --profile).
   */
  private readonly buffer = Buffer.allocUnsafe(AUDIT_FLUSH_BYTES);
  private used = 0;
  private lines = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly path: string | undefined,
    private readonly format: LogFormat,
    private readonly logger: CommandLogger,
  ) {
    if (path === undefined) return;
    // Fatal at start, as a config mistake is: not an error line per item later.
    try {
      this.fd = openSync(path, 'a', 0o640);
    } catch (err) {
      throw new Error(`cannot open the audit log ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  readonly write = (record: AuditRecord): void => {
    // No file (or no longer: a record after close) goes to the log, never nowhere.
    if (this.fd === undefined) {
      this.logger.entry('audit', auditFields(record));
      return;
    }
    const line = `${this.format === 'json' ? auditJson(record) : formatAudit(record)}\n`;
    // At most 3 bytes of UTF-8 per UTF-16 unit: a line that might not fit waits for none.
    if (this.used + 3 * line.length > this.buffer.length) this.flush();
    if (3 * line.length > this.buffer.length) {
      this.writeOut(Buffer.from(line), 1); // a line longer than the buffer (escaped arguments), alone
      return;
    }
    this.used += this.buffer.write(line, this.used);
    this.lines++;
    this.timer ??= setTimeout(this.flush, AUDIT_FLUSH_MS);
  };

  /** The buffered lines, written at once. */
  private readonly flush = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.used === 0) return;
    this.writeOut(this.buffer.subarray(0, this.used), this.lines);
    this.used = 0;
    this.lines = 0;
  };

  /**
   * `bytes` into the file with writeSync, as the log lines on stderr are
   * when it is a file: at most AUDIT_FLUSH_BYTES into the page cache, where
   * fs.WriteStream cost twice the CPU per flush. A failed write (disk full)
   * is logged with the lines it held; the next flush tries again.
   */
  private writeOut(bytes: Buffer, lines: number): void {
    if (this.fd === undefined) return;
    try {
      // A regular file takes all of a write short of a full disk; the rest, if not.
      for (let at = 0; at < bytes.length; ) at += writeSync(this.fd, bytes, at);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      this.logger.error(`audit log ${this.path}: ${why}; ${lines} audit line(s) not written in full`);
    }
  }

  /** SIGHUP: the file opened again by its name (logrotate moved the old one away). */
  reopen(): void {
    if (this.path === undefined) return;
    this.flush(); // the lines before the signal go to the file they were made for
    let fd: number;
    try {
      fd = openSync(this.path, 'a', 0o640);
    } catch (err) {
      this.logger.error(
        `SIGHUP: cannot reopen the audit log ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; still writing to the file it had`,
      );
      return;
    }
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = fd;
    this.logger.info(`SIGHUP: reopened the audit log ${this.path}`);
  }

  close(): void {
    this.flush();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
