import { ResultTooLargeError } from '../errors.js';

/**
 * What a call may hold of its jobs' returns (`rest_wsgi: max_result_bytes`),
 * counted in packed bytes as they come; past it the call ends with 507 and
 * lets go of them. One per call, shared by its jobs (local_batch's).
 */
export class ResultBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  /** Count `bytes` of job `jid`'s returns; throws ResultTooLargeError past the limit. */
  charge(bytes: number, jid: string): void {
    this.used += bytes;
    if (this.used <= this.limit) return;
    throw new ResultTooLargeError(
      `The returns of job ${jid} are more than this server may hold for one request ` +
        `(rest_wsgi: max_result_bytes, ${this.limit} bytes). The job keeps running on the master: ` +
        `look its returns up with the runner jobs.lookup_jid (jid ${jid}), or target fewer minions.`,
    );
  }
}
