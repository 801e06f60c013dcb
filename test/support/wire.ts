/**
 * The captured Salt wire bytes in ../shared/salt-wire/,
 * loaded once for the transport tests.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const wireDir = path.join(repoRoot, '..', 'shared', 'salt-wire');

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

export const reqserver = JSON.parse(readFileSync(path.join(wireDir, 'reqserver.json'), 'utf8')) as Record<string, ReqServerCase>;
const eventsFile = JSON.parse(readFileSync(path.join(wireDir, 'events.json'), 'utf8')) as {
  replies: Record<string, unknown>;
  events: CapturedEvent[];
};
export const capturedEvents = eventsFile.events;
export const capturedReplies = eventsFile.replies;

/** Every captured bus frame's bytes, in capture order. */
export const eventFrames: Buffer[] = capturedEvents.map((e) => Buffer.from(e.frame_msgpack_b64, 'base64'));
