/**
 * Whether this process may reach the master through its sock_dir: enter
 * the directory (search permission) to see the master's sockets, and
 * connect to the event bus socket, master_event_pub.ipc (write permission
 * on the socket file). A master run as root makes them root's, mode 0700 /
 * 0600 by default, so a server run as another user finds the master
 * "not running" although it is: this names the access that is missing
 * instead (README: "Permission denied").
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { MasterOptions } from './config.js';

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

/** Search permission on sock_dir (and on the directories above it). */
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

/** Write permission on the event bus socket (ipc_mode ipc; with ipc_mode tcp the bus is a TCP port). */
export function eventBusProblem(opts: MasterOptions): AccessProblem | undefined {
  if (opts.ipc_mode === 'tcp') return undefined;
  const dirProblem = sockDirProblem(opts);
  if (dirProblem) return dirProblem;
  const file = join(String(opts.sock_dir), 'master_event_pub.ipc');
  try {
    accessSync(file, constants.W_OK);
  } catch (err) {
    if (!denied(err)) return undefined;
    return {
      reply: "this server's user may not connect to the master's event bus (master_event_pub.ipc)",
      log:
        `${whoAmI()} may not connect to the event bus ${file}: write permission denied on the socket; ` +
        'items that wait for their job (local, local_subset, local_batch, runner) get 503 until it may',
    };
  }
  return undefined;
}
