/**
 * Request/reply over a child process's IPC channel: the bench asks its
 * children (the master double, the server) for things by message.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface Message {
  type: string;
  id?: number;
  [key: string]: unknown;
}

let lastId = 0;

/** Send `message` to `child` and resolve with its reply (same `id`). */
export function ask<T extends Message>(child: ChildProcess, message: Message, timeoutMs = 10_000): Promise<T> {
  const id = ++lastId;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      reject(new Error(`no answer to ${message.type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (reply: Message) => {
      if (reply?.id !== id) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      if (reply.type === 'error') reject(new Error(String(reply.message)));
      else resolve(reply as T);
    };
    child.on('message', onMessage);
    child.send({ ...message, id });
  });
}

/** Fork a bench child (a .ts file next to this one, run through tsx); resolves with its first message. */
export function startChild<T extends Message>(
  file: string,
  args: string[] = [],
  execArgv: string[] = [],
): Promise<{ child: ChildProcess; ready: T }> {
  const child = fork(fileURLToPath(new URL(file, import.meta.url)), args, {
    execArgv: ['--import', 'tsx', ...execArgv],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${file} exited (${code}) before it was ready`));
    child.once('exit', onExit);
    child.once('message', (ready: T) => {
      child.off('exit', onExit);
      resolve({ child, ready });
    });
  });
}

/** In a child: answer requests from the parent with `handle`. */
export function serveParent(handle: (message: Message) => Promise<Record<string, unknown>> | Record<string, unknown>): void {
  process.on('message', async (message: Message) => {
    try {
      const reply = await handle(message);
      process.send!({ type: 'reply', ...reply, id: message.id });
    } catch (err) {
      process.send!({ type: 'error', message: (err as Error).message, id: message.id });
    }
  });
}
