/**
 * The master's sockets in its sock_dir, and what they tell: where the event
 * bus is, whether the master runs (the transport's running socket, named by
 * its row in ./transports.ts), whether this process may reach them (a master
 * run as root makes them root's, mode 0700 / 0600 by default, so a server run
 * as another user would find the master "not running" although it is: the
 * access that is missing is named instead, README: "Permission denied"), and
 * a mark that changes when the master starts again (it makes them anew).
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import type { MasterOptions } from './config.js';
import { RUNNING_SOCKETS, runningSocket } from './transports.js';

/** The event bus's socket, with ipc_mode ipc (salt/utils/event.py: SaltEvent.__load_uri, node 'master'). */
const EVENT_BUS_SOCKET = 'master_event_pub.ipc';

export function eventBusSocketFile(opts: MasterOptions): string {
  return path.join(String(opts.sock_dir), EVENT_BUS_SOCKET);
}

/**
 * The socket in sock_dir whose presence says the master runs: its
 * transport's (./transports.ts). With ipc_mode: tcp a master makes none (they
 * are TCP ports then): callers also take an open connection to the master as
 * a yes.
 */
export function masterSocketFile(opts: MasterOptions): string {
  return path.join(String(opts.sock_dir), runningSocket(opts.transport));
}

/** salt/netapi/__init__.py _is_master_running: the transport's socket (masterSocketFile) exists. */
export function isMasterRunning(opts: MasterOptions): boolean {
  return existsSync(masterSocketFile(opts));
}

/** A mark that changes when the master starts again: its sockets in sock_dir are made anew (inode and mtime). */
export function masterStartMark(opts: MasterOptions): string {
  const marks: string[] = [];
  for (const name of [EVENT_BUS_SOCKET, ...RUNNING_SOCKETS]) {
    try {
      const st = statSync(path.join(String(opts.sock_dir), name), { throwIfNoEntry: false });
      if (st) marks.push(`${name}:${st.ino}:${st.mtimeMs}`);
    } catch {
      // Not readable: the mark is what can be seen (the permission check says why elsewhere).
    }
  }
  return marks.join(',');
}

/** A missing access: `reply` for HTTP answers (no paths), `log` with the path and user for the operator. */
export interface AccessProblem {
  reply: string;
  log: string;
}

function denied(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'EACCES' || code === 'EPERM';
}

function whoAmI(): string {
  try {
    return `user ${userInfo().username} (uid ${process.getuid?.() ?? '?'})`;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** Search permission on sock_dir (and on the directories above it), to see the master's sockets. */
export function sockDirProblem(opts: MasterOptions): AccessProblem | undefined {
  const dir = String(opts.sock_dir);
  try {
    accessSync(dir, constants.X_OK);
  } catch (err) {
    if (!denied(err)) return undefined; // missing: the master is not running, not a permission matter
    return {
      reply: "this server's user may not enter the master's sock_dir",
      log: `${whoAmI()} may not enter sock_dir ${dir}: search (x) permission denied on it or a directory above it; every request gets 503 until it may`,
    };
  }
  return undefined;
}

/**
 * Write permission on the event bus socket, to connect to it (ipc_mode ipc;
 * with ipc_mode tcp the bus is a TCP port). `waitingClients` are the clients
 * that wait for their job on the bus, for the log (the client table knows
 * them: lib/clients/table.ts).
 */
export function eventBusProblem(opts: MasterOptions, waitingClients: readonly string[] = []): AccessProblem | undefined {
  if (opts.ipc_mode === 'tcp') return undefined;
  const dirProblem = sockDirProblem(opts);
  if (dirProblem) return dirProblem;
  const file = eventBusSocketFile(opts);
  try {
    accessSync(file, constants.W_OK);
  } catch (err) {
    if (!denied(err)) return undefined;
    const which = waitingClients.length > 0 ? ` (${waitingClients.join(', ')})` : '';
    return {
      reply: `this server's user may not connect to the master's event bus (${EVENT_BUS_SOCKET})`,
      log:
        `${whoAmI()} may not connect to the event bus ${file}: write permission denied on the socket; ` +
        `items that wait for their job${which} get 503 until it may`,
    };
  }
  return undefined;
}
