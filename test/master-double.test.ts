/**
 * The test master double (test/support/master.ts) against the real master's
 * captures: every captured request, sent as its captured bytes over a real
 * ZeroMQ socket, gets a reply equal to the captured one but for jids, stamps
 * and tokens; the bus frames of the captured flows come out in the same order
 * with the same data. Then the behaviours other tests rely on: minion delays,
 * silence, find_job, tokens, credentials, targeting, restart on the same
 * ports, noise, logs.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket from 'ws';
import { describe, it, type TestContext } from 'node:test';
import { parse } from 'yaml';
import { decode, encode } from '../lib/salt/codec.js';
import { type SaltMasterDouble, startMaster, type MasterDoubleOptions } from './support/master.js';
import { BusFrameParser, BusTap, RawRequester, encodeReply, newJid, packEvent, reqOnce } from './support/master-wire.js';
import { capturedEvents, capturedReplies, noCapture, reqserver } from './support/wire.js';

const SALTDEV = { eauth: 'auto', username: 'saltdev', password: 'x' };
const LIMITED = { eauth: 'auto', username: 'limited', password: 'x' };

interface Rig {
  master: SaltMasterDouble;
  req: RawRequester;
  tap: BusTap;
}

/** A started master, a DEALER on its request channel and a raw bus subscriber, all closed after the test. */
async function rig(t: TestContext, options: MasterDoubleOptions = {}): Promise<Rig> {
  const master = await startMaster(options);
  t.after(() => master.close());
  const req = new RawRequester(master.address);
  t.after(() => req.close());
  const tap = new BusTap(master.eventTarget);
  t.after(() => tap.close());
  await tap.connected;
  await master.waitForBusClients(1);
  return { master, req, tap };
}

function publishLoad(fields: Record<string, unknown> = {}, creds: Record<string, unknown> = SALTDEV): Record<string, unknown> {
  return {
    cmd: 'publish',
    tgt: '*',
    fun: 'test.ping',
    arg: [],
    tgt_type: 'glob',
    ret: '',
    jid: '',
    user: 'saltdev',
    kwargs: { ...creds },
    ...fields,
  };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Replace every occurrence of each `from` byte string by `to` (same length, so msgpack lengths stay valid). */
function substitute(bytes: Buffer, pairs: Array<[string, string]>): Buffer {
  const out = Buffer.from(bytes);
  for (const [from, to] of pairs) {
    assert.equal(from.length, to.length, `${from} and ${to} have the same length`);
    const f = Buffer.from(from);
    for (let i = out.indexOf(f); i >= 0; i = out.indexOf(f, i + 1)) Buffer.from(to).copy(out, i);
  }
  return out;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * Replace the values that differ from run to run by labels, checking their
 * shape on the way: jids (labelled by order of first appearance, so the same
 * jid must sit in the same places on both sides), `_stamp`s, tokens, token
 * times and pids. What is left must be identical, key order included.
 */
function normalizer() {
  const jids = new Map<string, string>();
  const label = (jid: string) => {
    if (!jids.has(jid)) jids.set(jid, `<jid${jids.size}>`);
    return jids.get(jid)!;
  };
  const walk = (value: unknown, key = ''): unknown => {
    if (typeof value === 'string') {
      if (key === '_stamp') {
        assert.match(value, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/, `_stamp ${value}`);
        return '<stamp>';
      }
      if (key === 'token') {
        assert.match(value, /^[0-9a-f]{64}$/, 'token is 64 hex digits');
        return '<token>';
      }
      return value.replace(/\d{20}/g, (jid) => label(jid));
    }
    if (key === 'start' || key === 'expire') {
      assert.equal(typeof value, 'number', `${key} is a number`);
      assert.ok(!Number.isInteger(value), `${key} is a float, as Python's time.time()`);
      return '<time>';
    }
    if (key === 'pid') {
      assert.ok(Number.isInteger(value) && (value as number) > 0, 'pid is a positive integer');
      return '<pid>';
    }
    if (Array.isArray(value)) return value.map((v) => walk(v));
    if (isMap(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    return value;
  };
  return walk;
}

/** Same keys in the same order, same types, same values but for jids, stamps, tokens, times and pids. */
function assertEquivalent(actual: unknown, expected: unknown, what: string): void {
  const a = normalizer()(actual);
  const e = normalizer()(expected);
  assert.deepStrictEqual(a, e, what);
  assert.ok(encode(a).equals(encode(e)), `${what}: same key order and msgpack types`);
}

describe('request channel: replies to the captured requests', () => {
  it('every case of reqserver.json, sent as its captured bytes over a DEALER, gets the captured reply', { skip: noCapture }, async (t) => {
    const { req } = await rig(t);
    for (const [name, c] of Object.entries(reqserver)) {
      const raw = await req.requestRaw(Buffer.from(c.request_msgpack_b64, 'base64'));
      const reply = decode(raw);
      assertEquivalent(reply, c.reply, name);
      if (name === 'mk_token') {
        const tok = reply as { start: number; expire: number };
        assert.ok(Math.abs(tok.expire - tok.start - 43200) < 1e-3, 'tokens last token_expire (12 h)');
        continue;
      }
      // Byte for byte, once the jid and _stamp strings are swapped for the captured ones.
      const captured = c.reply as any;
      const ours = reply as any;
      const pairs: Array<[string, string]> = [];
      const jid = ours.jid ?? ours.load?.jid ?? ours.data?.jid;
      const capturedJid = captured.jid ?? captured.load?.jid ?? captured.data?.jid;
      if (typeof jid === 'string') pairs.push([jid, capturedJid]);
      if (ours.data?._stamp) pairs.push([ours.data._stamp, captured.data._stamp]);
      assert.equal(
        substitute(raw, pairs).toString('base64'),
        c.reply_msgpack_b64,
        `${name}: the reply bytes are the captured bytes but for jid and _stamp`,
      );
    }
  });

  it('packs replies as the master does (old msgpack spec): every captured reply re-packs to its captured bytes', {
    skip: noCapture,
  }, () => {
    for (const [name, c] of Object.entries(reqserver)) {
      assert.equal(encodeReply(c.reply).toString('base64'), c.reply_msgpack_b64, name);
    }
    assert.deepEqual(decode(encodeReply({ n: [-1, -33, -200, 70000, 2 ** 40, 1.5, null, true], b: Buffer.from('hi') })), {
      n: [-1, -33, -200, 70000, 2 ** 40, 1.5, null, true],
      b: 'hi',
    });
  });

  it('answers a REQ socket (envelope [""]) and a DEALER with several envelope frames, echoing the envelope', {
    skip: noCapture,
  }, async (t) => {
    const { master, req } = await rig(t);
    const payload = Buffer.from(reqserver.publish_ok.request_msgpack_b64, 'base64');
    const viaReq = decode(await reqOnce(master.address, payload)) as any;
    assert.deepEqual(viaReq.load.minions, ['minion1']);

    const frames = await req.requestFrames(encode({ enc: 'clear', load: { cmd: 'ping', x: 1 }, version: 2 }), 2000, [
      Buffer.from('hop1'),
      Buffer.from('hop2'),
    ]);
    assert.equal(frames.length, 5, 'correlation, two extra frames, empty delimiter, reply');
    assert.deepEqual(frames.slice(1, 4).map(String), ['hop1', 'hop2', '']);
    assert.deepEqual(decode(frames[4]), { cmd: 'ping', x: 1 }, 'ping sends the load back');
  });

  it('answers many requests in flight on one DEALER, each to its own correlation id', async (t) => {
    const { req } = await rig(t);
    const replies = await Promise.all(Array.from({ length: 20 }, () => req.request({ cmd: 'wheel', fun: 'key.list_all', ...SALTDEV })));
    const jids = new Set(replies.map((r) => r.jid ?? r.data.jid));
    assert.equal(jids.size, 20, 'twenty distinct wheel jobs');
    for (const r of replies) assert.deepEqual(r.data.return.minions, ['minion1']);
  });

  it('answers what the master answers to malformed payloads, and {} to unknown commands', async (t) => {
    const { req } = await rig(t);
    assert.equal(decode(await req.requestRaw(Buffer.from([0xc1]))), 'bad load', 'not msgpack');
    assert.equal(decode(await req.requestRaw(Buffer.from([0x82, 0xa3]))), 'bad load', 'truncated msgpack');
    assert.equal(decode(await req.requestRaw(encode(['x']))), 'payload and load must be a dict');
    assert.equal(decode(await req.requestRaw(encode({ enc: 'clear', load: 'x' }))), 'payload and load must be a dict');
    assert.equal(decode(await req.requestRaw(encode({ enc: 'aes', load: { cmd: 'publish' } }))), 'bad load', 'no AES here');
    assert.deepEqual(await req.request({ cmd: 'no_such_cmd' }), {});
    assert.equal(await req.request({ cmd: 'publish', ...SALTDEV }), 'Some exception handling minion payload', 'a publish without fun/tgt');
  });

  it("makes jids in Salt's 20-digit %Y%m%d%H%M%S%f format, unique within the process", () => {
    const jids = Array.from({ length: 2000 }, () => newJid());
    for (const jid of jids) assert.match(jid, /^20\d{18}$/);
    assert.equal(new Set(jids).size, jids.length);
    assert.deepEqual([...jids].sort(), jids, 'increasing');
  });
});

describe('event bus: the captured flows', () => {
  it('publish, publish + find_job, runner, runner lookup_jid and wheel emit the captured frames in order', {
    skip: noCapture,
  }, async (t) => {
    const { master, req, tap } = await rig(t);

    // events.json, flow by flow: publish test.arg with a keyword argument...
    const pubArg = await req.request(publishLoad({ fun: 'test.arg', arg: ['a', { k: 'v', __kwarg__: true }] }));
    await tap.waitFor(`salt/job/${pubArg.load.jid}/ret/minion1`);
    // ...test.sleep 3, and saltutil.find_job on it while it runs...
    const pubSleep = await req.request(publishLoad({ fun: 'test.sleep', arg: [3] }));
    const pubFind = await req.request(
      publishLoad({ fun: 'saltutil.find_job', arg: [pubSleep.load.jid], tgt: 'minion1', tgt_type: 'list' }),
    );
    await tap.waitFor(`salt/job/${pubSleep.load.jid}/ret/minion1`);
    // ...runner test.arg with a keyword, runner jobs.lookup_jid of the sleep, wheel key.list_all.
    const runArg = await req.request({ cmd: 'runner', fun: 'test.arg', kwarg: { x: 1 }, ...SALTDEV });
    await tap.waitFor(`${runArg.tag}/ret`);
    const runLookup = await req.request({ cmd: 'runner', fun: 'jobs.lookup_jid', kwarg: { jid: pubSleep.load.jid }, ...SALTDEV });
    await tap.waitFor(`${runLookup.tag}/ret`);
    const wheel = await req.request({ cmd: 'wheel', fun: 'key.list_all', ...SALTDEV });
    await tap.waitFor(`${wheel.tag}/ret`);

    assertEquivalent(
      [pubArg, pubSleep, pubFind, runArg, runLookup, wheel],
      [
        capturedReplies.publish_test_arg,
        capturedReplies.publish_test_sleep,
        capturedReplies.publish_find_job,
        capturedReplies.runner_test_arg,
        capturedReplies.runner_lookup_jid,
        capturedReplies.wheel_key_list_all,
      ],
      'the replies of the flows',
    );

    assert.deepEqual(
      normalizer()(tap.frames.map((f) => f.tag)),
      normalizer()(capturedEvents.map((e) => e.tag)),
      'same tags in the same order (jids labelled by first appearance)',
    );
    // Each frame, its volatile values normalised, packs to what the real master's frame packs to.
    const ours = normalizer();
    const theirs = normalizer();
    tap.frames.forEach((frame, i) => {
      const captured = capturedEvents[i];
      assert.ok(frame.raw.equals(packEvent(frame.tag, frame.data)), `frame ${i}: Salt's framing, byte for byte`);
      assert.deepEqual(frame.head, {}, `frame ${i}: empty head`);
      const a = ours({ tag: frame.tag, data: frame.data }) as { tag: string; data: unknown };
      const e = theirs({ tag: captured.tag, data: captured.data }) as { tag: string; data: unknown };
      assert.deepStrictEqual(a, e, `frame ${i} (${captured.tag})`);
      assert.ok(packEvent(a.tag, a.data).equals(packEvent(e.tag, e.data)), `frame ${i}: same key order and msgpack types`);
    });
    assert.equal(tap.frames.length, capturedEvents.length);
    assert.equal(master.busClientCount, 1);
  });

  it("the find_job return while a job runs is the job's publication plus its pid", async (t) => {
    const { req, tap } = await rig(t);
    const sleep = await req.request(publishLoad({ fun: 'test.sleep', arg: [3] }));
    const find = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: [sleep.load.jid], tgt: ['minion1'], tgt_type: 'list' }));
    const running = await tap.waitFor(`salt/job/${find.load.jid}/ret/minion1`);
    const publication = (await tap.waitFor(`salt/job/${sleep.load.jid}/publish`)).data;
    const { _stamp, ...sent } = publication;
    assert.ok(_stamp);
    const { pid, ...info } = running.data.return;
    assert.ok(Number.isInteger(pid));
    assert.deepEqual(info, sent);
    assert.deepEqual(
      Object.keys(running.data.return),
      ['pid', 'fun', 'arg', 'tgt', 'jid', 'ret', 'tgt_type', 'user'],
      'key order as captured',
    );

    await tap.waitFor(`salt/job/${sleep.load.jid}/ret/minion1`);
    const after = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: [sleep.load.jid], tgt: 'minion1', tgt_type: 'list' }));
    const done = await tap.waitFor(`salt/job/${after.load.jid}/ret/minion1`);
    assert.deepEqual(done.data.return, {}, 'a finished job is not found');
  });
});

describe('minions', () => {
  it('a minion with delayMs returns later than a fast one, and find_job says it is running meanwhile', async (t) => {
    const { req, tap } = await rig(t, { minions: [{ id: 'fast' }, { id: 'slow', delayMs: 300 }] });
    const started = Date.now();
    const pub = await req.request(publishLoad());
    assert.deepEqual(pub.load.minions, ['fast', 'slow']);
    await tap.waitFor(`salt/job/${pub.load.jid}/ret/fast`);
    const find = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: [pub.load.jid], tgt: ['fast', 'slow'], tgt_type: 'list' }));
    const slowFind = await tap.waitFor(`salt/job/${find.load.jid}/ret/slow`);
    const fastFind = await tap.waitFor(`salt/job/${find.load.jid}/ret/fast`);
    assert.equal(slowFind.data.return.jid, pub.load.jid, 'the slow minion is still running the job');
    assert.deepEqual(fastFind.data.return, {}, 'the fast one is done');
    assert.equal(tap.matching(`salt/job/${pub.load.jid}/ret/slow`).length, 0, 'no return from the slow minion yet');
    const slowRet = await tap.waitFor(`salt/job/${pub.load.jid}/ret/slow`);
    assert.ok(Date.now() - started >= 290, 'the slow minion kept the job for its delay');
    assert.equal(slowRet.data.return, true);
    const order = tap.frames.map((f) => f.tag).filter((tag) => tag.startsWith(`salt/job/${pub.load.jid}/ret/`));
    assert.deepEqual(order, [`salt/job/${pub.load.jid}/ret/fast`, `salt/job/${pub.load.jid}/ret/slow`]);
  });

  it('a silent minion is targeted but never returns and never answers find_job', async (t) => {
    const { req, tap } = await rig(t, { minions: [{ id: 'minion1' }, { id: 'ghost1', silent: true }] });
    const pub = await req.request(publishLoad());
    assert.deepEqual(pub.load, { jid: pub.load.jid, minions: ['minion1', 'ghost1'], missing: [] });
    await tap.waitFor(`salt/job/${pub.load.jid}/ret/minion1`);
    const find = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: [pub.load.jid], tgt: ['ghost1'], tgt_type: 'list' }));
    assert.deepEqual(find.load.minions, ['ghost1']);
    await wait(150);
    assert.equal(tap.matching(/\/ret\/ghost1$/).length, 0, 'nothing from ghost1');
    const down = await req.request({ cmd: 'runner', fun: 'manage.down', ...SALTDEV });
    assert.deepEqual((await tap.waitFor(`${down.tag}/ret`)).data.return, ['ghost1']);
    const up = await req.request({ cmd: 'runner', fun: 'manage.up', ...SALTDEV });
    assert.deepEqual((await tap.waitFor(`${up.tag}/ret`)).data.return, ['minion1']);
  });

  it('a job with delayMs Infinity never returns, while find_job and saltutil.running keep reporting it', async (t) => {
    const { req, tap } = await rig(t, { minions: [{ id: 'stuck', delayMs: Infinity }] });
    const pub = await req.request(publishLoad({ tgt: 'stuck' }));
    for (let i = 0; i < 2; i++) {
      const find = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: [pub.load.jid], tgt: 'stuck', tgt_type: 'list' }));
      assert.equal((await tap.waitFor(`salt/job/${find.load.jid}/ret/stuck`)).data.return.jid, pub.load.jid);
    }
    const running = await req.request(publishLoad({ fun: 'saltutil.running', tgt: 'stuck' }));
    const list = (await tap.waitFor(`salt/job/${running.load.jid}/ret/stuck`)).data.return;
    assert.deepEqual(
      list.map((j: { jid: string }) => j.jid),
      [pub.load.jid],
    );
    assert.equal(tap.matching(`salt/job/${pub.load.jid}/ret/stuck`).length, 0);
  });

  it("returns are shaped like the minion's, for results, retcodes and errors", async (t) => {
    const { req, tap } = await rig(t);
    const run = async (fun: string, arg: unknown[] = []) => {
      const pub = await req.request(publishLoad({ fun, arg }));
      return (await tap.waitFor(`salt/job/${pub.load.jid}/ret/minion1`)).data;
    };
    const echo = await run('test.echo', ['héllo']);
    assert.deepEqual(Object.keys(echo), ['cmd', 'id', 'success', 'return', 'retcode', 'jid', 'fun', 'fun_args', 'user', '_stamp']);
    assert.deepEqual([echo.return, echo.success, echo.retcode], ['héllo', true, 0]);

    const missing = await run('foo.bar');
    assert.deepEqual([missing.return, missing.success, missing.retcode, missing.out], ["'foo.bar' is not available.", false, 1, 'nested']);

    const retcode = await run('test.retcode', [3]);
    assert.deepEqual([retcode.return, retcode.success, retcode.retcode], [true, false, 3]);

    const boom = await run('test.exception', ['kaput']);
    assert.equal(boom.success, false);
    assert.match(boom.return, /^The minion function caused an exception: Traceback[\s\S]*Exception: kaput\n$/);

    const badKwarg = await run('test.ping', ['x=1']);
    assert.equal(badKwarg.return, "ERROR executing 'test.ping': The following keyword arguments are not valid: x=1");
    const noArg = await run('test.echo');
    assert.match(noArg.return, /^Passed invalid arguments to test.echo: echo\(\) missing 1 required positional argument: 'text'/);

    const parsed = await run('test.arg', [1, 'n=2', 'flag=true', { k: [1, 2], __kwarg__: true }]);
    assert.deepEqual(parsed.return.args, [1]);
    assert.deepEqual([parsed.return.kwargs.n, parsed.return.kwargs.flag, parsed.return.kwargs.k], [2, true, [1, 2]]);
    assert.equal(parsed.return.kwargs.__pub_fun, 'test.arg');
    assert.deepEqual(parsed.fun_args, [1, 'n=2', 'flag=true', { k: [1, 2], __kwarg__: true }], 'fun_args: the arg as published');

    assert.equal((await run('cmd.run', ['echo hi'])).return, 'hi');
    const fail = await run('cmd.run', ['false']);
    assert.deepEqual([fail.success, fail.retcode], [false, 1]);
    assert.equal((await run('grains.get', ['os'])).return, 'Debian');
  });

  it("sys.list_functions lists a minion's functions, and overrides change results per minion or for all", async (t) => {
    const { master, req, tap } = await rig(t, {
      minions: [
        { id: 'full' },
        { id: 'bare', functions: ['test.ping'], overrides: { 'app.version': (call) => `v1 on ${call.minion.id}` } },
      ],
    });
    master.minionFunctions.set('test.echo', (call) => `echo override: ${String(call.args[0])}`);
    const list = await req.request(publishLoad({ fun: 'sys.list_functions' }));
    const bare = (await tap.waitFor(`salt/job/${list.load.jid}/ret/bare`)).data.return;
    const full = (await tap.waitFor(`salt/job/${list.load.jid}/ret/full`)).data.return;
    assert.deepEqual(bare, ['app.version', 'saltutil.find_job', 'saltutil.running', 'sys.list_functions', 'test.ping']);
    assert.ok(full.includes('test.arg') && full.includes('cmd.run') && !full.includes('app.version'));
    assert.deepEqual(full, [...full].sort());

    const only = await req.request(publishLoad({ fun: 'sys.list_functions', arg: ['test'], tgt: 'full' }));
    assert.ok((await tap.waitFor(`salt/job/${only.load.jid}/ret/full`)).data.return.every((f: string) => f.startsWith('test.')));

    const app = await req.request(publishLoad({ fun: 'app.version' }));
    assert.equal((await tap.waitFor(`salt/job/${app.load.jid}/ret/bare`)).data.return, 'v1 on bare');
    assert.equal((await tap.waitFor(`salt/job/${app.load.jid}/ret/full`)).data.return, "'app.version' is not available.");

    const echo = await req.request(publishLoad({ fun: 'test.echo', arg: ['x'], tgt: 'full' }));
    assert.equal((await tap.waitFor(`salt/job/${echo.load.jid}/ret/full`)).data.return, 'echo override: x');
  });
});

describe('targeting', () => {
  it('glob, list (with missing), pcre, grain and compound targets; nothing matched is the captured error', async (t) => {
    const { req } = await rig(t, {
      minions: [
        { id: 'web1', grains: { roles: ['web'] } },
        { id: 'web2', grains: { roles: ['web', 'db'] } },
        { id: 'db1', grains: { os: 'RedHat' } },
      ],
    });
    const minions = async (tgt: unknown, tgt_type: string) => (await req.request(publishLoad({ tgt, tgt_type }))).load;
    assert.deepEqual((await minions('web?', 'glob')).minions, ['web1', 'web2']);
    assert.deepEqual((await minions('[!w]*', 'glob')).minions, ['db1']);
    assert.deepEqual(await minions(['db1', 'nosuch'], 'list').then((l) => [l.minions, l.missing]), [['db1'], ['nosuch']]);
    assert.deepEqual((await minions('web2,db1', 'list')).minions, ['web2', 'db1']);
    assert.deepEqual((await minions('w.b', 'pcre')).minions, ['web1', 'web2'], 'pcre matches at the start');
    assert.deepEqual((await minions('roles:db', 'grain')).minions, ['web2']);
    assert.deepEqual((await minions('os:Red*', 'grain')).minions, ['db1']);
    assert.deepEqual((await minions('web* and not G@roles:db', 'compound')).minions, ['web1']);
    assert.deepEqual((await minions('L@db1 or ( E@web and G@roles:db )', 'compound')).minions, ['web2', 'db1']);
    assert.deepEqual(await minions('nosuch', 'glob'), {
      jid: null,
      minions: [],
      error: 'Master could not resolve minions for target nosuch',
    });
  });
});

describe('credentials', () => {
  it("tokens from mk_token authenticate publish, runner and wheel; bad tokens get the master's errors", async (t) => {
    const { master, req, tap } = await rig(t);
    const tok = await req.request({ cmd: 'mk_token', ...SALTDEV });
    assert.match(tok.token, /^[0-9a-f]{64}$/);
    assert.deepEqual(Object.keys(tok), ['start', 'expire', 'name', 'eauth', 'token']);
    const token = { token: tok.token };

    const pub = await req.request(publishLoad({ user: 'whoever' }, token));
    assert.equal((await tap.waitFor(`salt/job/${pub.load.jid}/publish`)).data.user, 'saltdev', "the token's user");
    const run = await req.request({ cmd: 'runner', fun: 'test.arg', ...token });
    assert.equal((await tap.waitFor(`${run.tag}/ret`)).data.user, 'saltdev');
    const wheel = await req.request({ cmd: 'wheel', fun: 'key.list_all', ...token });
    assert.equal(wheel.data.success, true);
    assert.deepEqual(await req.request({ cmd: 'get_token', ...token }), tok);

    const bad = { token: 'f'.repeat(64) };
    const tokenError = { error: { name: 'TokenAuthenticationError', message: 'Authentication failure of type "token" occurred.' } };
    assert.deepEqual(await req.request({ cmd: 'runner', fun: 'test.arg', ...bad }), tokenError);
    assert.deepEqual(await req.request({ cmd: 'wheel', fun: 'key.list_all', ...bad }), tokenError);
    assert.deepEqual(await req.request(publishLoad({}, bad)), {
      error: { name: 'AuthenticationError', message: 'Authentication error occurred.' },
    });
    assert.deepEqual(await req.request({ cmd: 'get_token', ...bad }), {});

    const limitedTok = await req.request({ cmd: 'mk_token', ...LIMITED });
    assert.deepEqual(await req.request({ cmd: 'runner', fun: 'manage.up', token: limitedTok.token }), {
      error: { name: 'TokenAuthenticationError', message: 'Authentication failure of type "token" occurred for user limited.' },
    });
    assert.equal(await req.request({ cmd: 'mk_token', eauth: 'auto', username: 'saltdev', password: 'wrong' }), '', 'no token');
    assert.equal(master.eauth.tokens.size, 2);
  });

  it('tokens expire after tokenExpireS', async (t) => {
    const { req } = await rig(t, { tokenExpireS: 0.05 });
    const tok = await req.request({ cmd: 'mk_token', ...SALTDEV });
    assert.ok((await req.request({ cmd: 'runner', fun: 'test.arg', token: tok.token })).jid);
    await wait(100);
    assert.equal((await req.request({ cmd: 'runner', fun: 'test.arg', token: tok.token })).error.name, 'TokenAuthenticationError');
  });

  it('authentication failures and authorization failures get the errors of salt/master.py', async (t) => {
    const { master, req, tap } = await rig(t);
    const wrong = { eauth: 'auto', username: 'saltdev', password: 'wrong' };
    const authn = { error: { name: 'AuthenticationError', message: 'Authentication error occurred.' } };
    const authz = { error: { name: 'AuthorizationError', message: 'Authorization error occurred.' } };
    assert.deepEqual(await req.request(publishLoad({}, wrong)), authn, 'wrong password');
    assert.deepEqual(await req.request(publishLoad({}, { eauth: 'ldap', username: 'saltdev', password: 'x' })), authn, 'eauth not enabled');
    assert.deepEqual(await req.request(publishLoad({}, {})), authn, 'no credentials');
    assert.deepEqual(
      await req.request(publishLoad({}, { eauth: 'pam', username: 'nobody', password: 'x' })),
      authn,
      'unknown user, not auto',
    );
    assert.deepEqual(
      await req.request(publishLoad({}, { eauth: 'auto', username: 'nobody', password: 'x' })),
      authz,
      'unknown user under auto',
    );
    assert.deepEqual(await req.request(publishLoad({ fun: 'cmd.run', arg: ['id'] }, LIMITED)), authz);
    assert.deepEqual(await req.request({ cmd: 'runner', fun: 'test.arg', ...wrong }), {
      error: { name: 'EauthAuthenticationError', message: 'Authentication failure of type "eauth" occurred for user saltdev.' },
    });
    assert.deepEqual(await req.request({ cmd: 'wheel', fun: 'key.list_all', eauth: 'auto' }), {
      error: { name: 'EauthAuthenticationError', message: 'Authentication failure of type "eauth" occurred for user UNKNOWN.' },
    });
    assert.deepEqual(await req.request({ cmd: 'runner', fun: 'test.arg' }), {
      error: { name: 'UserAuthenticationError', message: 'Authentication failure of type "user" occurred' },
    });
    assert.deepEqual(await req.request({ cmd: 'runner', fun: 'nodots', ...SALTDEV }), {
      error: { name: 'SaltInvocationError', message: 'A command invocation error occurred: Check syntax.' },
    });

    // None of that ran anything: no job, no runner, no wheel; only the master's error events.
    assert.deepEqual(master.executed, []);
    assert.equal(master.jobs.size, 0);
    assert.ok(
      tap.frames.every((f) => f.tag === 'salt/job//error'),
      'only salt/job/<jid>/error events',
    );
    assert.equal(master.counts.publish, 6);
    assert.equal(master.counts.runner, 3);
    assert.equal(master.counts.wheel, 1);
    assert.equal(
      master.requests[0].load.kwargs && (master.requests[0].load.kwargs as any).password,
      'wrong',
      'the log keeps loads as received',
    );

    // find_job is allowed to anyone authenticated (the master whitelists it), and test.* to limited.
    const find = await req.request(publishLoad({ fun: 'saltutil.find_job', arg: ['1'] }, LIMITED));
    assert.deepEqual(find.load.minions, ['minion1']);
    assert.ok((await req.request(publishLoad({ fun: 'test.echo', arg: ['x'] }, LIMITED))).load.jid);
  });

  it('permissions follow external_auth entries: per-target lists, argument conditions, @runner and @wheel', async (t) => {
    const { req } = await rig(t, {
      minions: [{ id: 'web1' }, { id: 'db1' }],
      users: {
        ops: {
          password: 'pw',
          permissions: [{ 'web*': ['test.*', { 'cmd.run': { args: ['uptime'] } }] }, { '@runner': ['jobs.*'] }, '@wheel'],
        },
      },
    });
    const ops = { eauth: 'pam', username: 'ops', password: 'pw' };
    assert.ok((await req.request(publishLoad({ tgt: 'web1' }, ops))).load.jid, 'test.* on web*');
    assert.equal((await req.request(publishLoad({ tgt: '*' }, ops))).error?.name, 'AuthorizationError', 'db1 is not web*');
    assert.ok((await req.request(publishLoad({ tgt: 'web1', fun: 'cmd.run', arg: ['uptime'] }, ops))).load.jid);
    assert.equal(
      (await req.request(publishLoad({ tgt: 'web1', fun: 'cmd.run', arg: ['rm -rf /'] }, ops))).error?.name,
      'AuthorizationError',
    );
    assert.ok((await req.request({ cmd: 'runner', fun: 'jobs.lookup_jid', kwarg: { jid: '1' }, ...ops })).jid);
    assert.equal((await req.request({ cmd: 'runner', fun: 'manage.up', ...ops })).error?.name, 'EauthAuthenticationError');
    assert.equal((await req.request({ cmd: 'wheel', fun: 'key.list_all', ...ops })).data.success, true);
  });
});

describe('runner and wheel calls', () => {
  it('runner arguments: flat keywords mapped onto the signature, or arg + kwarg as given; unknown functions and unbound arguments fire nothing', async (t) => {
    const { master, req, tap } = await rig(t);
    const ret = async (load: Record<string, unknown>) => {
      const reply = await req.request({ cmd: 'runner', ...SALTDEV, ...load });
      assert.deepEqual(Object.keys(reply), ['tag', 'jid']);
      return (await tap.waitFor(`${reply.tag}/ret`)).data;
    };
    assert.deepEqual((await ret({ fun: 'test.arg', kwarg: { arg: [1, 2], kwarg: { a: 1 } } })).return, { args: [1, 2], kwargs: { a: 1 } });
    assert.deepEqual((await ret({ fun: 'test.arg', kwarg: { a: 1 } })).return, { args: [], kwargs: { a: 1 } });
    const lookup = await ret({ fun: 'jobs.lookup_jid', kwarg: { jid: '1', timeout: 5 } });
    assert.deepEqual(
      lookup.fun_args,
      ['1', { display_progress: false, missing: false, returned: true, ext_source: null }],
      'unknown keys dropped',
    );

    // As Salt 3007.1: format_call or verify_fun fails before the proc file is
    // open, the `finally` raises UnboundLocalError, and the process dies
    // without firing `new` or `ret` (the master's log has the traceback).
    const missingArg = await req.request({ cmd: 'runner', fun: 'jobs.lookup_jid', ...SALTDEV });
    const reply = await req.request({ cmd: 'runner', fun: 'nosuch.fun', ...SALTDEV });
    await new Promise((r) => setTimeout(r, 100));
    for (const job of [missingArg, reply]) assert.equal(tap.matching(`${job.tag}/`).length, 0, `nothing fired for ${job.tag}`);
    assert.deepEqual(
      master.neverStarted.map((n) => [n.jid, n.error]),
      [
        [missingArg.jid, 'lookup_jid takes at least 1 argument (0 given)'],
        [reply.jid, "'nosuch.fun' is not available."],
      ],
    );

    const sent = await ret({ fun: 'event.send', kwarg: { tag: 'my/tag', data: { a: 1 } } });
    assert.equal(sent.return, true);
    assert.equal((await tap.waitFor('my/tag')).data.a, 1);
  });

  it('wheel key functions change the key lists', async (t) => {
    const { master, req } = await rig(t, { keys: { pre: ['new1'] } });
    const wheel = (fun: string, extra: Record<string, unknown> = {}) => req.request({ cmd: 'wheel', fun, ...SALTDEV, ...extra });
    assert.deepEqual((await wheel('key.list', { match: 'pre' })).data.return, { minions_pre: ['new1'] });
    assert.deepEqual((await wheel('key.accept', { match: 'new*' })).data.return, { minions: ['new1'] });
    assert.ok(master.minion('new1'), 'an accepted key is a minion');
    assert.deepEqual((await wheel('key.list_all')).data.return.minions, ['minion1', 'new1']);
    assert.deepEqual((await wheel('key.delete', { match: 'new1' })).data.return, { minions: ['new1'] });
    const missing = await wheel('key.list');
    assert.equal(missing.data.success, false, 'key.list without match');
  });
});

describe('lifecycle', () => {
  it('stops and starts again on the same ports and paths; workers.ipc exists only while running', async (t) => {
    const { master, req, tap } = await rig(t);
    const { retPort, eventPath, configPath } = master;
    assert.ok(existsSync(master.workersIpcPath));
    assert.ok((await req.request(publishLoad())).load.jid);

    await master.stop();
    assert.equal(master.running, false);
    assert.ok(!existsSync(master.workersIpcPath), 'workers.ipc removed: _is_master_running says no');
    await wait(50);
    assert.ok(tap.closed, 'bus subscribers are disconnected');
    await assert.rejects(req.request(publishLoad(), 200), /no reply/, 'nobody answers while stopped');

    await master.start();
    assert.deepEqual([master.retPort, master.eventPath, master.configPath], [retPort, eventPath, configPath]);
    assert.ok(existsSync(master.workersIpcPath));
    // The same DEALER reconnects by itself (ZeroMQ), a new subscriber sees the new events.
    const tap2 = new BusTap(master.eventTarget);
    t.after(() => tap2.close());
    await tap2.connected;
    await master.waitForBusClients(1);
    const again = await req.request(publishLoad(), 3000);
    assert.ok((await tap2.waitFor(`salt/job/${again.load.jid}/ret/minion1`)).data.return);

    await master.close();
    assert.ok(!existsSync(master.dir), 'close() removes the temp dir');
  });

  it('writes a master config file for the server under test, with the extra options given', async (t) => {
    const { master } = await rig(t, { config: { timeout: 0.1, rest_wsgi: { port: 0 } } });
    const config = parse(readFileSync(master.configPath, 'utf8'));
    assert.equal(config.interface, '127.0.0.1');
    assert.equal(config.ret_port, master.retPort);
    assert.equal(config.sock_dir, master.sockDir);
    assert.equal(config.ipc_mode, 'ipc');
    assert.equal(config.timeout, 0.1);
    assert.equal(config.gather_job_timeout, 0.25);
    assert.deepEqual(config.rest_wsgi, { port: 0 });
    assert.deepEqual(config.netapi_enable_clients, [
      'local',
      'local_async',
      'local_subset',
      'local_batch',
      'runner',
      'runner_async',
      'wheel',
      'wheel_async',
      'ssh',
    ]);
    assert.deepEqual(config.external_auth.auto.limited, ['test.*']);

    await master.writeConfig({ netapi_enable_clients: ['local'] });
    await master.stop();
    await master.start();
    const rewritten = parse(readFileSync(master.configPath, 'utf8'));
    assert.deepEqual([rewritten.netapi_enable_clients, rewritten.timeout], [['local'], 0.1], 'kept across a restart');
  });

  it('serves the bus over TCP with ipcMode tcp, and in small slices with busChunkBytes', async (t) => {
    const { master, req, tap } = await rig(t, { ipcMode: 'tcp', busChunkBytes: 7 });
    assert.deepEqual(master.eventTarget, { host: '127.0.0.1', port: master.pubPort });
    const config = parse(readFileSync(master.configPath, 'utf8'));
    assert.deepEqual([config.ipc_mode, config.tcp_master_pub_port], ['tcp', master.pubPort]);
    const pub = await req.request(publishLoad({ fun: 'test.arg', arg: ['a'] }));
    const ret = await tap.waitFor(`salt/job/${pub.load.jid}/ret/minion1`);
    assert.deepEqual(ret.data.return.args, ['a']);
    assert.deepEqual(tap.frames.map((f) => f.tag).slice(0, 3), [
      pub.load.jid,
      `salt/job/${pub.load.jid}/new`,
      `salt/job/${pub.load.jid}/publish`,
    ]);
  });

  it('can stop answering (answerRequests) or answer late (replyDelayMs) while running', async (t) => {
    const { master, req } = await rig(t);
    master.answerRequests = false;
    await assert.rejects(req.request({ cmd: 'ping' }, 150), /no reply/);
    assert.equal(master.counts.ping, 1, 'received and logged all the same');
    master.answerRequests = true;
    master.replyDelayMs = 100;
    const started = Date.now();
    assert.deepEqual(await req.request({ cmd: 'ping', n: 2 }), { cmd: 'ping', n: 2 });
    assert.ok(Date.now() - started >= 90);
  });
});

describe('noise and logs', () => {
  it('emits unrelated events of every kind, on demand and periodically', async (t) => {
    const { master, tap } = await rig(t);
    const noise = Array.from({ length: 8 }, () => master.emitNoise());
    const tags = noise.map((n) => n.tag);
    assert.equal(new Set(tags.map((tag) => tag.replace(/\d{20}/, 'JID'))).size, 7, 'seven tag shapes');
    assert.deepEqual(
      noise.filter((n) => 'schedule' in n.data).map((n) => n.data.schedule),
      ['__mine_interval', 'job1'],
      'two scheduled job returns',
    );
    for (const pattern of [
      /^minion\/refresh\//,
      /^salt\/auth$/,
      /^salt\/minion\/.*\/start$/,
      /^salt\/job\/\d{20}\/ret\//,
      /^salt\/presence\/present$/,
      /^salt\/key$/,
      /^\d{20}$/,
    ]) {
      assert.ok(
        tags.some((tag) => pattern.test(tag)),
        String(pattern),
      );
    }
    await tap.waitFor(tags[7]);
    assert.equal(master.jobs.size, 0, 'noise is no job of ours');

    master.startNoise(10);
    await wait(120);
    master.stopNoise();
    assert.ok(tap.frames.length >= 8 + 5, `periodic noise arrived (${tap.frames.length} frames)`);
    master.fire('custom/tag', { any: 'thing' });
    const custom = await tap.waitFor('custom/tag');
    assert.deepEqual(Object.keys(custom.data), ['any', '_stamp']);
  });

  it('logs every request and counts them by cmd, and clearLog() starts over', async (t) => {
    const { master, req } = await rig(t);
    const seen = master.nextRequest('wheel');
    await req.request({ cmd: 'wheel', fun: 'key.list_all', ...SALTDEV });
    assert.equal((await seen).load.fun, 'key.list_all');
    await req.request(publishLoad());
    await req.request({ cmd: 'nothing' });
    assert.deepEqual(master.counts, { wheel: 1, publish: 1, nothing: 1 });
    assert.deepEqual(
      master.requests.map((r) => r.cmd),
      ['wheel', 'publish', 'nothing'],
    );
    assert.deepEqual(master.requests[2].reply, {});
    assert.deepEqual(
      master.executed.map((e) => e.kind),
      ['wheel', 'publish'],
    );
    master.clearLog();
    assert.deepEqual([master.requests.length, master.events.length, Object.keys(master.counts).length], [0, 0, 0]);
  });

  it('the frame parser reassembles frames split and joined anywhere', () => {
    const small = [packEvent('a/b', { x: 1 }), packEvent('salt/job/1/ret/m', { s: 'y'.repeat(300) }), packEvent('c', {})];
    const big = [packEvent('big', { s: 'z'.repeat(200000) }), ...small];
    for (const [frames, steps] of [
      [small, [1, 2, 3, 64]],
      [big, [4096, 65536]],
    ] as const) {
      const all = Buffer.concat(frames);
      for (const step of [...steps, all.length]) {
        const parser = new BusFrameParser();
        const out = [];
        for (let i = 0; i < all.length; i += step) out.push(...parser.push(all.subarray(i, i + step)));
        assert.equal(out.length, frames.length, `step ${step}`);
        assert.ok(
          out.every((f, i) => f.raw.equals(frames[i])),
          `step ${step}: every frame whole`,
        );
      }
    }
  });
});

describe('request server on the tcp and ws transports (as a 3007.1 master of each answered)', () => {
  const tokenLoad = { enc: 'clear', load: { cmd: 'mk_token', ...SALTDEV }, version: 2 };

  it("tcp: a {head, body} frame in, the reply under the request's head, packed with bin type (a 64-byte token is str8)", async (t) => {
    const master = await startMaster({ transport: 'tcp' });
    t.after(() => master.close());
    assert.ok(existsSync(`${master.sockDir}/publish_pull.ipc`) && !existsSync(`${master.sockDir}/workers.ipc`));
    assert.equal(parse(readFileSync(master.configPath, 'utf8')).transport, 'tcp');
    const socket = net.connect(master.retPort, '127.0.0.1');
    t.after(() => socket.destroy());
    socket.write(encode({ head: { mid: 7 }, body: tokenLoad }));
    const [reply] = (await once(socket, 'data')) as [Buffer];
    // 82 a4 'head' 81 a3 'mid' 07 a4 'body': the real master's bytes, head echoed.
    assert.equal(reply.subarray(0, 17).toString('hex'), '82a46865616481a36d696407a4626f6479');
    const token = (decode(reply) as { body: { token: string } }).body.token;
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.ok(reply.includes(Buffer.concat([Buffer.from([0xd9, 0x40]), Buffer.from(token)])), 'str8, as frame_msg packs it');
  });

  it('ws: one binary message in, one out, packed as payload.dumps (a 64-byte token is str16); messages of a connection answered in order', async (t) => {
    const master = await startMaster({ transport: 'ws' });
    t.after(() => master.close());
    assert.ok(existsSync(`${master.sockDir}/publish_pull.ipc`) && !existsSync(`${master.sockDir}/workers.ipc`));
    const socket = new WebSocket(`ws://127.0.0.1:${master.retPort}/`);
    t.after(() => socket.terminate());
    await once(socket, 'open');
    const replies: Buffer[] = [];
    socket.on('message', (data: Buffer) => replies.push(data));
    socket.send(encode(tokenLoad));
    socket.send(encode({ enc: 'clear', load: publishLoad({ tgt: 'minion1' }), version: 2 }));
    while (replies.length < 2) await wait(10);
    const token = (decode(replies[0]) as { token: string }).token;
    assert.ok(
      replies[0].includes(Buffer.concat([Buffer.from([0xda, 0x00, 0x40]), Buffer.from(token)])),
      'str16, as payload.dumps packs it',
    );
    assert.deepEqual((decode(replies[1]) as { load: { minions: string[] } }).load.minions, ['minion1']);
  });
});
