/**
 * A server run as a user the master's sock_dir refuses: the start-up log
 * and every answer say permission denied and which access is missing,
 * instead of "master not running". A real unprivileged user (useradd), the
 * server run as it through setpriv, from a bundled copy under the system's
 * temporary directory (the clone may be under a 0700 directory that user
 * can't enter); skipped, saying why, where that can't be done (not root, no
 * useradd/setpriv, a temporary directory or node the user can't reach).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import { startMaster, type SaltMasterDouble } from './support/master.js';
import { request } from './support/http.js';
import { asUserArgs, runToEnd, startCommand } from './support/command.js';
import { readableServer } from './support/server-copy.js';

const PASSWORD = 'permission-test-secret';
const CRED = { eauth: 'pam', username: 'saltdev', password: PASSWORD };
const USERS = { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel'] } };

/** Why this can't run here, or undefined. */
function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (useradd, setpriv)';
  if (process.getuid?.() !== 0) return 'needs root to add a user and run the server as it';
  for (const tool of ['useradd', 'userdel', 'setpriv']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `needs ${tool}`;
    }
  }
  return undefined;
}

/**
 * Why `user` can't run the server here, or undefined: it runs node and a
 * bundled copy of the command (test/support/server-copy.ts) under the
 * system's temporary directory, since the clone may be out of its reach.
 */
async function cannotRunAs(user: string): Promise<string | undefined> {
  const bin = await readableServer();
  const [file, ...args] = [...asUserArgs(user), process.execPath, bin, '--version'];
  const run = await runToEnd(file, args, { cwd: dirname(bin) });
  if (run.code === 0) return undefined;
  const said = (run.stderr.trim().split('\n')[0] ?? '').slice(0, 200);
  return `a fresh user can't run ${process.execPath} ${bin} (is ${tmpdir()} or node out of its reach?): ${said}`;
}

/** A fresh system user, removed after the test. */
function addUser(t: { after(fn: () => unknown): void }): string {
  const name = `srw${randomBytes(4).toString('hex')}`;
  execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], { stdio: 'ignore' });
  // --force: the hooks run in order, and the server running as it is killed by a later one.
  t.after(() => execFileSync('userdel', ['--force', name], { stdio: 'ignore' }));
  return name;
}

/** A master double whose config (not its sockets) the other user may read. */
async function masterFor(t: { after(fn: () => unknown): void }): Promise<SaltMasterDouble> {
  const master = await startMaster({ users: USERS, config: { rest_wsgi: { port: 0 } } });
  t.after(() => master.close());
  await chmod(master.dir, 0o755);
  await chmod(master.configPath, 0o644);
  return master;
}

const post = (port: number, item: Record<string, unknown>) => request(port, { body: [{ ...CRED, ...item }] });

test('sock_dir the user may not enter: logged at start, each request 503 permission denied, not "not running"', async (t) => {
  const why = cannotRun();
  if (why) return t.skip(why);
  const user = addUser(t);
  const unreachable = await cannotRunAs(user);
  if (unreachable) return t.skip(unreachable);
  const master = await masterFor(t);
  await chmod(master.sockDir, 0o700);
  const server = await startCommand(t, ['-c', master.configPath], {}, user);
  await server.waitFor(/permission denied/);
  const uid = execFileSync('id', ['-u', user]).toString().trim();
  assert.match(
    server.stderr(),
    new RegExp(
      `permission denied: user ${user} \\(uid ${uid}\\) may not enter sock_dir ${master.sockDir}: search \\(x\\) permission denied`,
    ),
  );
  assert.doesNotMatch(server.stderr(), /master not running/);
  t.diagnostic(
    server
      .stderr()
      .split('\n')
      .find((l) => l.includes('permission denied')) ?? '',
  );
  for (const item of [
    { client: 'local', tgt: 'minion1', fun: 'test.ping' },
    { client: 'local_async', tgt: 'minion1', fun: 'test.ping' },
    { client: 'runner', fun: 'test.arg' },
  ]) {
    const reply = await post(server.port, item);
    assert.equal(reply.status, 503, reply.text);
    assert.deepEqual(reply.json, {
      return: "Salt Master is not reachable: permission denied (this server's user may not enter the master's sock_dir).",
    });
  }
  t.diagnostic(`POST answer: ${(await post(server.port, { client: 'local', tgt: 'minion1', fun: 'test.ping' })).text}`);
  assert.equal(master.requests.length, 0, 'nothing reached the master');
});

test('the event bus socket the user may not connect to: jobs that wait for it 503 permission denied, at once; async ones run', async (t) => {
  const why = cannotRun();
  if (why) return t.skip(why);
  const user = addUser(t);
  const unreachable = await cannotRunAs(user);
  if (unreachable) return t.skip(unreachable);
  const master = await masterFor(t);
  await chmod(master.sockDir, 0o755);
  await chmod(master.eventPath, 0o600); // as Salt makes it: root's, srw-------
  const server = await startCommand(t, ['-c', master.configPath], {}, user);
  await server.waitFor(/permission denied/);
  assert.match(server.stderr(), new RegExp(`may not connect to the event bus ${master.eventPath}: write permission denied on the socket`));
  // The clients named are the client table's that wait for their job.
  assert.match(server.stderr(), /items that wait for their job \(local, local_subset, local_batch, runner\) get 503 until it may/);
  t.diagnostic(
    server
      .stderr()
      .split('\n')
      .find((l) => l.includes('permission denied')) ?? '',
  );

  const start = performance.now();
  const reply = await post(server.port, { client: 'local', tgt: 'minion1', fun: 'test.ping' });
  assert.ok(performance.now() - start < 1500, 'not after the bus wait');
  assert.equal(reply.status, 503);
  assert.deepEqual(reply.json, {
    return:
      "Salt Master is not reachable: permission denied (this server's user may not connect to the master's event bus (master_event_pub.ipc)).",
  });
  assert.equal(master.itemRequests.filter((r) => r.cmd === 'publish').length, 0, 'a job whose returns cannot be heard is not published');

  const async = await post(server.port, { client: 'local_async', tgt: 'minion1', fun: 'test.ping' });
  assert.equal(async.status, 200, async.text);
});
