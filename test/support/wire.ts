/**
 * The captured Salt wire bytes (../shared/salt-wire/ beside the clone, or
 * SALT_WIRE_DIR), loaded once for the transport tests. They are not in the
 * repository: a clone without them runs every other test, and the tests of
 * the captured bytes are skipped with `noCapture` as the reason. CI
 * (SALT_WIRE_REQUIRED=1, set by .ci/run) fails instead.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const wireDir = process.env.SALT_WIRE_DIR || path.join(repoRoot, '..', 'shared', 'salt-wire');
const present = existsSync(path.join(wireDir, 'reqserver.json')) && existsSync(path.join(wireDir, 'events.json'));
if (!present && process.env.SALT_WIRE_REQUIRED) {
  throw new Error(`The captured Salt wire bytes are not in ${wireDir} (SALT_WIRE_REQUIRED is set)`);
}

/** Why the tests of the captured bytes are skipped, or false: they run. */
export const noCapture: string | false = present
  ? false
  : `no captured Salt wire bytes in ${wireDir} (put ../shared/salt-wire beside the clone, or set SALT_WIRE_DIR)`;

export interface ReqServerCase {
  request: Record<string, unknown>;
  request_msgpack_b64: string;
  reply_msgpack_b64: string;
  reply: unknown;
}

export interface CapturedEvent {
  frame_msgpack_b64: string;
  head: Record<string, unknown>;
  tag: string;
  data: unknown;
}

function readCapture<T>(file: string, none: T): T {
  return present ? (JSON.parse(readFileSync(path.join(wireDir, file), 'utf8')) as T) : none;
}

export const reqserver = readCapture<Record<string, ReqServerCase>>('reqserver.json', {});
const eventsFile = readCapture<{ replies: Record<string, unknown>; events: CapturedEvent[] }>('events.json', { replies: {}, events: [] });
export const capturedEvents = eventsFile.events;
export const capturedReplies = eventsFile.replies;

/** Every captured bus frame's bytes, in capture order. */
export const eventFrames: Buffer[] = capturedEvents.map((e) => Buffer.from(e.frame_msgpack_b64, 'base64'));
