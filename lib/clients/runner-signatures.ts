/**
 * The runner functions the master has, with their signatures, so that a
 * runner item is bound as Salt's RunnerClient binds it on its own side
 * (salt/runner.py _reformat_low: salt.minion.load_args_and_kwargs with
 * ignore_invalid=True). Only a process holding the runner modules knows
 * them; here the master says, through the `salt.cmd` runner running
 * `sys.runner_argspec '*'` (salt/modules/sysmod.py, argspec_report in
 * salt/utils/args.py): one runner job whose keys are the function list
 * (`sys.list_runner_functions` gives the same names) and whose values are
 * the signatures.
 *
 * The job runs with the credentials of the item that needs the table, once
 * per master start (masterStartMark, lib/salt/master-sockets.ts). Credentials the master refuses it
 * to are remembered (per master start) and those items keep the form the
 * master binds itself (see runner.ts).
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseInput } from './args.js';
import { defineKey, isPlainObject, stringsIn } from '../objects.js';
import { AuthenticationError } from '../errors.js';
import { toJson } from '../json.js';

/** What load_args_and_kwargs needs of a function: its named parameters and whether it takes **kwargs. */
export interface RunnerSignature {
  args: string[];
  kwargs: boolean;
}

export type SignatureTable = ReadonlyMap<string, RunnerSignature>;

/** Runs `salt.cmd sys.runner_argspec '*'` with `creds` and gives its return. */
export type TableFetcher = (creds: Record<string, unknown>) => Promise<unknown>;

/** After a fetch that failed for another reason than credentials, items go unbound for this long before it is tried again. */
const RETRY_AFTER_FAILURE_MS = 60_000;
/** A function missing from a table this old makes the table be fetched again (a runner synced since). */
const REFRESH_AFTER_MS = 60_000;
/** Credentials remembered as refused, at most. */
const MAX_REFUSED = 1000;

/** Who the credentials are, without keeping a token or password. */
function identity(creds: Record<string, unknown>): string {
  // toJson, not String(): a field may be any JSON value, an object with a `toString` key or none at all included.
  const who = creds.token !== undefined ? `token:${toJson(creds.token)}` : `${toJson(creds.eauth)}:${toJson(creds.username)}`;
  return createHash('sha256').update(who).digest('base64url');
}

export class RunnerSignatures {
  private table: { mark: string; at: number; functions: Map<string, RunnerSignature> } | undefined;
  private pending: { mark: string; promise: Promise<void> } | undefined;
  private failedAt = -Infinity;
  private refused = new Set<string>();
  private refusedMark = '';

  constructor(
    private readonly fetchTable: TableFetcher,
    private readonly startMark: () => string,
  ) {}

  /**
   * The table for this master start, fetched with `creds` if there is none
   * yet; undefined where it can't be had (credentials refused, or the fetch
   * failed: see README, "Runner arguments").
   */
  async lookup(creds: Record<string, unknown>): Promise<SignatureTable | undefined> {
    const mark = this.startMark();
    if (this.table?.mark === mark) return this.table.functions;
    if (this.refusedMark !== mark) {
      this.refused.clear();
      this.refusedMark = mark;
    }
    if (this.refused.has(identity(creds)) || performance.now() - this.failedAt < RETRY_AFTER_FAILURE_MS) return undefined;
    await this.fetch(mark, creds);
    return this.table?.mark === mark ? this.table.functions : undefined;
  }

  /** `fun` is not in the table: fetch it again in the background if it is old (a runner may have been synced since). */
  missing(creds: Record<string, unknown>): void {
    if (!this.table || performance.now() - this.table.at < REFRESH_AFTER_MS || this.pending) return;
    this.fetch(this.table.mark, creds).catch(() => {});
  }

  /** One fetch at a time per master start; concurrent lookups share it. */
  private fetch(mark: string, creds: Record<string, unknown>): Promise<void> {
    if (this.pending?.mark === mark) return this.pending.promise;
    const promise = this.fetchTable(creds).then(
      (ret) => {
        const functions = parseTable(ret);
        if (functions) this.table = { mark, at: performance.now(), functions };
        else this.failedAt = performance.now();
      },
      (err: unknown) => {
        if (err instanceof AuthenticationError) {
          if (this.refused.size >= MAX_REFUSED) this.refused.clear();
          this.refused.add(identity(creds));
        } else {
          this.failedAt = performance.now();
        }
      },
    );
    const entry = {
      mark,
      promise: promise.finally(() => {
        if (this.pending === entry) this.pending = undefined;
      }),
    };
    this.pending = entry;
    return entry.promise;
  }
}

/** argspec_report's `{fun: {args, defaults, varargs, kwargs}}`, or undefined for anything else (an error text). */
function parseTable(ret: unknown): Map<string, RunnerSignature> | undefined {
  if (!isPlainObject(ret) || Object.keys(ret).length === 0) return undefined;
  const functions = new Map<string, RunnerSignature>();
  for (const [fun, spec] of Object.entries(ret)) {
    if (!isPlainObject(spec)) return undefined;
    const args = stringsIn(spec.args);
    functions.set(fun, { args, kwargs: spec.kwargs === true });
  }
  return functions;
}

/**
 * salt.minion.load_args_and_kwargs(func, args + [{__kwarg__: True, **kwargs}],
 * ignore_invalid=True): `k=v` strings among the positional arguments and the
 * keywords are kept where the function takes them (a named parameter, or
 * **kwargs), dropped otherwise; other positional arguments stay as they are.
 */
export function bindToSignature(
  sig: RunnerSignature,
  args: readonly unknown[],
  kwargs: Record<string, unknown>,
): { arg: unknown[]; kwarg: Record<string, unknown> } {
  const takes = (key: string) => sig.kwargs || sig.args.includes(key);
  const arg: unknown[] = [];
  const kwarg: Record<string, unknown> = {};
  for (const value of args) {
    // parse_input([value]): a string still shaped `k=v` after the first
    // yamlify is a keyword here. (`__kwarg__` dicts were taken out already.)
    if (typeof value !== 'string') {
      arg.push(value);
      continue;
    }
    const keywords = parseInput([value]).kwargs;
    const names = Object.keys(keywords);
    if (names.length === 0) arg.push(value);
    else if (takes(names[0])) for (const name of names) defineKey(kwarg, name, keywords[name]);
  }
  for (const [key, value] of Object.entries(kwargs)) if (takes(key)) defineKey(kwarg, key, value);
  return { arg, kwarg };
}
