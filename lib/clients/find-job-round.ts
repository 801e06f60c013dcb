/**
 * One find_job round of a wait for a job's returns (./returns.ts), as
 * LocalClient.gather_job_info does (salt/client/__init__.py): publish
 * `saltutil.find_job` for the job to the minions still silent, and hear
 * what each answers: still running the job, not any more, or failed.
 */
import type { SaltEvent } from '../salt/event-bus.js';
import { isPlainObject, stringsIn } from '../objects.js';
import type { ClientContext } from './context.js';
import { JobWatch } from './job-watch.js';
import { newJid } from './jid.js';

/** Publish `saltutil.find_job` to `targets` as job `jid` (already listened to); the jid the master gave it, or null. */
export type FindJobPublish = (targets: string[], jid: string) => Promise<string | null>;

/** What a round's answers tell the wait. */
export interface FindJobAnswers {
  /** `id` failed to run find_job itself: it is no longer waited for. */
  findJobFailed(id: string): void;
  /** An answer named minions to expect (a syndic's, behind it). */
  minionsNamed(ids: string[]): void;
  /** `id` still runs the job. */
  stillRunning(id: string): void;
}

export class FindJobRound {
  private readonly watches: JobWatch[] = [];
  private closed = false;

  constructor(
    private readonly ctx: ClientContext,
    private readonly answers: FindJobAnswers,
  ) {}

  /**
   * Publish the round to `targets`: true once the master took it while the
   * round is open (its gather_job_timeout starts then), false if it was
   * closed meanwhile. Rejects when the publish fails.
   */
  async publish(findJob: FindJobPublish, targets: string[]): Promise<boolean> {
    // Listened to before it is published: a quick minion's answer comes before the reply.
    const ownJid = newJid();
    this.watch(ownJid);
    const findJid = await findJob(targets, ownJid);
    if (this.closed) return false;
    // A master that chose its own jid: its events from now on.
    if (findJid !== null && findJid !== ownJid) this.watch(findJid);
    return !this.closed;
  }

  close(): void {
    this.closed = true;
    for (const watch of this.watches) watch.close();
    this.watches.length = 0;
  }

  private watch(jid: string): void {
    const watch = new JobWatch(this.ctx, jid);
    this.watches.push(watch);
    watch.listen({ onJobEvent: this.hear });
  }

  private readonly hear = (event: SaltEvent): void => {
    if (this.closed) return;
    const data = event.data;
    if (!isPlainObject(data)) return;
    const id = typeof data.id === 'string' ? data.id : undefined;
    if (typeof data.retcode === 'number' && data.retcode > 0 && id !== undefined) {
      this.ctx.logger.debug(`saltutil.find_job returned errors on minion ${id}`);
      this.answers.findJobFailed(id);
      return;
    }
    if ('minions' in data) {
      this.answers.minionsNamed(stringsIn(data.minions));
      return;
    }
    // An (older) syndic's answer names the minions behind it.
    if ('syndic' in data) {
      this.answers.minionsNamed(stringsIn(data.syndic));
      return;
    }
    if ('return' in data && id !== undefined && runsTheJob(data.return)) this.answers.stillRunning(id);
  };
}

/** find_job's return says the job runs there: `{}` (or `{"return": {}}`, or a string) says it does not any more. */
function runsTheJob(running: unknown): boolean {
  if (isEmptyObject(running) || typeof running === 'string') return false;
  return !(isPlainObject(running) && 'return' in running && isEmptyObject(running.return));
}

function isEmptyObject(value: unknown): boolean {
  return isPlainObject(value) && Object.keys(value).length === 0;
}
