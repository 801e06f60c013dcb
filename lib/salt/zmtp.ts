/**
 * ZeroMQ's wire protocol, ZMTP 3 (rfc.zeromq.org/spec/23 and /37), for one
 * DEALER connection with the NULL mechanism: what the master's ROUTER on
 * ret_port speaks to Salt's own clients.
 *
 * Why not libzmq (the `zeromq` package) on this path: it hands every message
 * to an I/O thread and back, which costs several system calls and two thread
 * wake-ups per request (about as much CPU as the rest of an HTTP request).
 * Over a node:net socket, every request made in one turn of the event loop
 * goes out in one write, and replies come in with the socket's reads.
 *
 * A connection is: each side sends a 64-byte greeting (signature, version,
 * mechanism "NULL"), then a READY command (socket type, metadata), then
 * frames: a flags byte (MORE 1, LONG 2, COMMAND 4), a size (1 byte, or 8
 * when LONG), the body. A message is frames up to one without MORE.
 */
import { ZmtpError } from './errors.js';

export const GREETING_SIZE = 64;

const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;

/** Larger frames are refused (a broken or hostile stream, not a Salt reply). */
const MAX_FRAME_BYTES = 2 ** 31;

/** Our greeting: ZMTP 3.0, NULL, as-server 0. */
export function greeting(): Buffer {
  const g = Buffer.alloc(GREETING_SIZE);
  g[0] = 0xff; // signature: 0xFF, 8 bytes of padding, 0x7F
  g[9] = 0x7f;
  g[10] = 3; // version 3.0
  g[11] = 0;
  g.write('NULL', 12, 'latin1'); // mechanism, NUL-padded to 20 bytes
  return g;
}

/** Check the peer's greeting; throws ZmtpError when it can't be talked to. */
export function checkGreeting(g: Buffer): void {
  if (g[0] !== 0xff || (g[9] & 0x01) !== 0x01) throw new ZmtpError('Not a ZeroMQ peer (bad greeting signature)');
  if (g[10] < 3) throw new ZmtpError(`ZeroMQ peer speaks ZMTP ${g[10]}.x; 3.0 or later is needed`);
  const mechanism = g.toString('latin1', 12, 32).replace(/\0+$/, '');
  if (mechanism !== 'NULL') throw new ZmtpError(`ZeroMQ peer wants the ${mechanism} mechanism; only NULL is supported`);
}

/** A command frame: name, then body. */
export function command(name: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const nameBytes = Buffer.from(name, 'latin1');
  return frame(FLAG_COMMAND, Buffer.concat([Buffer.from([nameBytes.length]), nameBytes, body]));
}

/** READY with our socket type: the metadata is `name-size name value-size(4) value` pairs. */
export function readyCommand(socketType: string): Buffer {
  const name = Buffer.from('Socket-Type', 'latin1');
  const value = Buffer.from(socketType, 'latin1');
  const property = Buffer.alloc(1 + name.length + 4 + value.length);
  property[0] = name.length;
  name.copy(property, 1);
  property.writeUInt32BE(value.length, 1 + name.length);
  value.copy(property, 1 + name.length + 4);
  return command('READY', property);
}

/** A command's name and body (`body` of a COMMAND frame). */
export function parseCommand(body: Buffer): { name: string; data: Buffer } {
  const size = body[0] ?? 0;
  if (body.length < 1 + size) throw new ZmtpError('Truncated ZMTP command');
  return { name: body.toString('latin1', 1, 1 + size), data: body.subarray(1 + size) };
}

/** READY's metadata as name → value (names in lower case: they are case-insensitive). */
export function parseMetadata(data: Buffer): Map<string, string> {
  const props = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const nameSize = data[pos];
    if (pos + 1 + nameSize + 4 > data.length) throw new ZmtpError('Truncated ZMTP metadata');
    const name = data.toString('latin1', pos + 1, pos + 1 + nameSize).toLowerCase();
    pos += 1 + nameSize;
    const valueSize = data.readUInt32BE(pos);
    pos += 4;
    if (pos + valueSize > data.length) throw new ZmtpError('Truncated ZMTP metadata');
    props.set(name, data.toString('latin1', pos, pos + valueSize));
    pos += valueSize;
  }
  return props;
}

function frameHeader(flags: number, size: number): Buffer {
  if (size <= 0xff) return Buffer.from([flags, size]);
  const header = Buffer.allocUnsafe(9);
  header[0] = flags | FLAG_LONG;
  header.writeBigUInt64BE(BigInt(size), 1);
  return header;
}

function frame(flags: number, body: Buffer): Buffer {
  return Buffer.concat([frameHeader(flags, body.length), body]);
}

/** One message (its frames, in order) as bytes, in a single buffer (one per request: no parts to join). */
export function encodeMessage(frames: readonly Buffer[]): Buffer {
  let size = 0;
  for (const body of frames) size += (body.length <= 0xff ? 2 : 9) + body.length;
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let i = 0; i < frames.length; i++) {
    const body = frames[i];
    const flags = i < frames.length - 1 ? FLAG_MORE : 0;
    if (body.length <= 0xff) {
      out[pos] = flags;
      out[pos + 1] = body.length;
      pos += 2;
    } else {
      out[pos] = flags | FLAG_LONG;
      out.writeBigUInt64BE(BigInt(body.length), pos + 1);
      pos += 9;
    }
    out.set(body, pos);
    pos += body.length;
  }
  return out;
}

export interface FrameSink {
  /** A whole message: its frames (views of the received bytes). */
  message(frames: Buffer[]): void;
  /** A command frame's body. */
  command(body: Buffer): void;
}

/**
 * Cuts the byte stream that follows the greeting into frames and messages.
 * Chunks are kept as they come until a whole frame is there, then joined
 * once: a large reply arriving in many reads is copied once, not once per read.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes needed before parsing is worth trying again. */
  private want = 0;
  private parts: Buffer[] = [];

  constructor(private readonly sink: FrameSink) {}

  /** Throws ZmtpError on a frame that breaks the protocol (drop the connection then). */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size < this.want) return;
    const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    let pos = 0;
    for (;;) {
      const avail = buf.length - pos;
      if (avail < 2) {
        this.want = 2;
        break;
      }
      const flags = buf[pos];
      if (flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND)) throw new ZmtpError(`Bad ZMTP frame flags 0x${flags.toString(16)}`);
      const headerSize = flags & FLAG_LONG ? 9 : 2;
      if (avail < headerSize) {
        this.want = headerSize;
        break;
      }
      const bodySize = flags & FLAG_LONG ? Number(buf.readBigUInt64BE(pos + 1)) : buf[pos + 1];
      if (bodySize > MAX_FRAME_BYTES) throw new ZmtpError(`ZMTP frame of ${bodySize} bytes`);
      if (avail < headerSize + bodySize) {
        this.want = headerSize + bodySize;
        break;
      }
      const body = buf.subarray(pos + headerSize, pos + headerSize + bodySize);
      pos += headerSize + bodySize;
      if (flags & FLAG_COMMAND) {
        this.sink.command(body);
        continue;
      }
      this.parts.push(body);
      if (!(flags & FLAG_MORE)) {
        const parts = this.parts;
        this.parts = [];
        this.sink.message(parts);
      }
    }
    const rest = pos === buf.length ? undefined : buf.subarray(pos);
    this.chunks = rest ? [rest] : [];
    this.size = rest ? rest.length : 0;
  }

  reset(): void {
    this.chunks = [];
    this.size = 0;
    this.want = 0;
    this.parts = [];
  }
}
