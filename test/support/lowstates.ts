/**
 * One working lowstate item per client, for tests that run "every client"
 * against the master double (default users and minions: `minion1`).
 */

export type Credentials = Record<string, unknown>;

/** [client, item] for each client the master double runs, with `cred` merged in. */
export function everyClient(cred: Credentials, tgt = 'minion1'): Array<[string, Record<string, unknown>]> {
  return [
    ['local', { ...cred, client: 'local', tgt, fun: 'test.ping' }],
    ['local_async', { ...cred, client: 'local_async', tgt, fun: 'test.ping' }],
    ['local_subset', { ...cred, client: 'local_subset', tgt, fun: 'test.ping', subset: 1 }],
    ['local_batch', { ...cred, client: 'local_batch', tgt, fun: 'test.ping', batch: '1' }],
    ['runner', { ...cred, client: 'runner', fun: 'test.arg', arg: ['a'], kwarg: { b: 1 } }],
    ['runner_async', { ...cred, client: 'runner_async', fun: 'test.arg', arg: ['a'] }],
    ['wheel', { ...cred, client: 'wheel', fun: 'key.list_all' }],
    ['wheel_async', { ...cred, client: 'wheel_async', fun: 'key.list_all' }],
  ];
}
