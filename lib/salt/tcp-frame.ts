/**
 * Salt's message framing on its tcp transport (salt/transport/frame.py:
 * frame_msg): each message is one msgpack map `{"head": {...}, "body": ...}`,
 * sent back to back on the stream with nothing in between. A request's head
 * carries its id, `{"mid": n}`, and the master's reply comes back under the
 * same head (salt/transport/tcp.py: RequestServer.handle_message), in
 * whatever order requests finish.
 */
import { decode, encode } from './codec.js';
import { FrameScanner } from './frame-scanner.js';
import { isPlainObject } from '../objects.js';

export interface FramedMessage {
  head: Record<string, unknown>;
  body: unknown;
}

/** One framed message as bytes. */
export function frameMessage(body: unknown, head: Record<string, unknown> = {}): Buffer {
  return encode({ head, body });
}

/** The `mid` of a framed message's head, if it is a number. */
export function messageId(message: FramedMessage): number | undefined {
  const mid = message.head.mid;
  return typeof mid === 'number' ? mid : typeof mid === 'bigint' ? Number(mid) : undefined;
}

/**
 * Cuts a byte stream into framed messages. A message whose bytes are msgpack
 * but not a `{head, body}` map is handed on as `undefined` (nothing to match
 * it to); bytes that are not msgpack throw FrameStreamError from push(), and
 * so does a frame over `maxFrameBytes`: the stream is lost then.
 */
export class FramedMessageReader {
  private readonly scanner: FrameScanner;

  constructor(
    private readonly onMessage: (message: FramedMessage | undefined, bytes: number) => void,
    maxFrameBytes?: number,
  ) {
    this.scanner = new FrameScanner(maxFrameBytes);
  }

  push(chunk: Uint8Array): void {
    this.scanner.push(chunk, (buf, start, end) => {
      const frame = buf.subarray(start, end);
      let value: unknown;
      try {
        value = decode(frame);
      } catch {
        this.onMessage(undefined, frame.length);
        return;
      }
      if (!isPlainObject(value) || !isPlainObject(value.head) || !('body' in value)) {
        this.onMessage(undefined, frame.length);
        return;
      }
      this.onMessage({ head: value.head, body: value.body }, frame.length);
    });
  }

  reset(): void {
    this.scanner.reset();
  }
}
