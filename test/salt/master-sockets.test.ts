/**
 * lib/salt/master-sockets.ts: where the master's sockets are, which one says
 * it runs (per transport), and the mark that changes when it starts again.
 * The access problems are shown end to end, as another user, in
 * test/permissions.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { applyMasterDefaults } from '../../lib/salt/config.js';
import {
  eventBusProblem,
  eventBusSocketFile,
  isMasterRunning,
  masterSocketFile,
  masterStartMark,
  sockDirProblem,
} from '../../lib/salt/master-sockets.js';
import { TRANSPORT_NAMES } from '../../lib/salt/transports.js';

function sockDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'srw-sockets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A listening unix socket at `file`, as the master makes them; resolves to its closer. */
async function listenAt(file: string): Promise<() => Promise<void>> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(file, resolve));
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('master sockets', () => {
  it('knows the master runs from workers.ipc (zeromq) or publish_pull.ipc (tcp, ws): each transport names its own', () => {
    const sock = '/run/salt/master';
    assert.equal(masterSocketFile(applyMasterDefaults({ sock_dir: sock })), `${sock}/workers.ipc`);
    assert.equal(masterSocketFile(applyMasterDefaults({ sock_dir: sock, transport: 'tcp' })), `${sock}/publish_pull.ipc`);
    assert.equal(masterSocketFile(applyMasterDefaults({ sock_dir: sock, transport: 'ws' })), `${sock}/publish_pull.ipc`);
    assert.deepEqual(TRANSPORT_NAMES, ['zeromq', 'tcp', 'ws']);
    assert.equal(eventBusSocketFile(applyMasterDefaults({ sock_dir: sock })), `${sock}/master_event_pub.ipc`);
  });

  it('isMasterRunning follows the transport socket', async (t) => {
    const dir = sockDir(t);
    const zeromq = applyMasterDefaults({ sock_dir: dir });
    const tcp = applyMasterDefaults({ sock_dir: dir, transport: 'tcp' });
    assert.equal(isMasterRunning(zeromq), false);
    const close = await listenAt(path.join(dir, 'workers.ipc'));
    assert.equal(isMasterRunning(zeromq), true);
    assert.equal(isMasterRunning(tcp), false);
    await close();
    assert.equal(isMasterRunning(zeromq), false);
  });

  it('the start mark changes when the master makes its sockets anew, and not otherwise', async (t) => {
    const dir = sockDir(t);
    const opts = applyMasterDefaults({ sock_dir: dir });
    assert.equal(masterStartMark(opts), '');
    let closeBus = await listenAt(path.join(dir, 'master_event_pub.ipc'));
    const closeWorkers = await listenAt(path.join(dir, 'workers.ipc'));
    const first = masterStartMark(opts);
    assert.match(first, /^master_event_pub\.ipc:\d+:[\d.]+,workers\.ipc:\d+:[\d.]+$/);
    assert.equal(masterStartMark(opts), first);
    await closeBus();
    await sleep(20); // a new inode may reuse the old number: its mtime differs
    closeBus = await listenAt(path.join(dir, 'master_event_pub.ipc'));
    assert.notEqual(masterStartMark(opts), first);
    await closeBus();
    await closeWorkers();
  });

  it('finds no access problem where there is none: a readable sock_dir, a missing socket, ipc_mode tcp', (t) => {
    const dir = sockDir(t);
    assert.equal(sockDirProblem(applyMasterDefaults({ sock_dir: dir })), undefined);
    assert.equal(sockDirProblem(applyMasterDefaults({ sock_dir: path.join(dir, 'missing') })), undefined);
    assert.equal(eventBusProblem(applyMasterDefaults({ sock_dir: dir }), ['local']), undefined);
    assert.equal(eventBusProblem(applyMasterDefaults({ sock_dir: '/nonexistent', ipc_mode: 'tcp' })), undefined);
  });
});
