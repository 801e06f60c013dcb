/**
 * The settings table (lib/http/settings.ts) is the one list of `rest_wsgi:`
 * keys: each is read, never warned about, warned about with its own name
 * when misspelt, shown in --help and in the README's table; createHandler
 * reads the master config's section through it, its own options winning.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, test } from 'node:test';
import { closest, unknownKeyWarnings } from '../../bin/checks.js';
import { ConfigError } from '../../lib/salt/errors.js';
import { createHandler } from '../../lib/http/handler.js';
import { handlerOptionsOf, readSettings, SETTING_KEYS, SETTINGS, settingsMarkdown } from '../../lib/http/settings.js';
import { BIN, repoRoot, runToEnd } from '../support/command.js';
import { request, serve, until } from '../support/http.js';
import type { AccessRecord } from '../../lib/log.js';

/** A value each kind takes, and one it refuses. */
const SAMPLES: Record<string, [unknown, unknown]> = {
  port: [8001, 70000],
  address: ['0.0.0.0', ''],
  path: ['/etc/pki/x.pem', 5],
  boolean: [true, 'sometimes'],
  bytes: [2048, -1],
  count: [4, 0],
  countOrOff: [0, 'many'],
  seconds: [1.5, 0],
  secondsOrOff: [0, -1],
  certReqs: ['CERT_REQUIRED', 'CERT_MAYBE'],
  names: [['api.example.com', 'ops'], [5]],
};

describe('every key of the table', () => {
  it('is read from the section (seconds as ms), and a bad value is one ConfigError naming key, file and what it takes', () => {
    for (const setting of SETTINGS) {
      const [good, bad] = SAMPLES[setting.kind];
      const values = readSettings({ [setting.key]: good }, '/etc/salt/master');
      assert.equal(values[setting.key], setting.kind.startsWith('seconds') ? (good as number) * 1000 : good, setting.key);
      assert.throws(
        () => readSettings({ [setting.key]: bad }, '/etc/salt/master'),
        (err: Error) =>
          err instanceof ConfigError &&
          err.message.startsWith(`invalid rest_wsgi: ${setting.key} ${JSON.stringify(bad)} in /etc/salt/master: `),
        setting.key,
      );
    }
  });

  it('starts with no warning; misspelt, it is warned about naming it as the closest key', () => {
    assert.deepEqual(unknownKeyWarnings(Object.fromEntries(SETTING_KEYS.map((key) => [key, null])), 'f'), []);
    for (const key of SETTING_KEYS) {
      const typo = `${key.slice(0, -1)}${key.endsWith('x') ? 'y' : 'x'}`;
      assert.equal(closest(typo, SETTING_KEYS), key, typo);
      assert.deepEqual(unknownKeyWarnings({ [typo]: 1 }, 'f'), [`ignoring unknown option rest_wsgi: ${typo} in f (did you mean ${key}?)`]);
    }
  });

  it('is in --help, with its flag where it has one', async () => {
    const help = await runToEnd(process.execPath, ['--import', 'tsx', BIN, '--help']);
    assert.equal(help.code, 0);
    for (const setting of SETTINGS) {
      assert.match(help.stdout, new RegExp(`^ {4}${setting.key}: `, 'm'), setting.key);
      if (setting.flag) assert.match(help.stdout, new RegExp(`^ +--${setting.flag}\\b.*rest_wsgi: ${setting.key}\\b`, 'm'), setting.flag);
    }
  });

  it("is in the README's settings table, which is the table's own", async () => {
    const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
    assert.ok(
      readme.includes(settingsMarkdown()),
      `the README's settings table is not the table of lib/http/settings.ts; print it with\n  node --import tsx -e "import('./lib/http/settings.ts').then((m) => console.log(m.settingsMarkdown()))"`,
    );
  });
});

test('the flag wins over the section; a bad flag is named as the flag', () => {
  const values = readSettings({ port: 8001, max_in_flight: 5 }, 'f', { port: '9001', 'max-in-flight': '7' });
  assert.equal(values.port, 9001);
  assert.equal(values.max_in_flight, 7);
  assert.throws(
    () => readSettings({}, 'f', { 'max-in-flight': '2.5' }),
    /^ConfigError: invalid --max-in-flight "2\.5": expected a positive integer$/,
  );
  assert.deepEqual(handlerOptionsOf(readSettings({ max_result_bytes: 9 }, 'f')).maxResultBytes, 9);
});

test('createHandler reads rest_wsgi: from the master config as the command does; its own options win', async () => {
  assert.throws(() => createHandler({ config: { rest_wsgi: { max_in_flight: 'lots' } } }), /invalid rest_wsgi: max_in_flight "lots"/);
  // trust_proxy from the config names the client from X-Forwarded-For; trustProxy: false, given, wins.
  for (const [trustProxy, client] of [
    [undefined, '203.0.113.7'],
    [false, '127.0.0.1'],
  ] as const) {
    const records: AccessRecord[] = [];
    const handler = createHandler({ config: { rest_wsgi: { trust_proxy: true } }, trustProxy, accessLog: (r) => records.push(r) });
    const { port, close } = await serve(handler);
    try {
      const reply = await request(port, { method: 'GET', headers: { 'x-forwarded-for': '203.0.113.7' } });
      assert.equal(reply.status, 200);
      await until(() => records.length === 1);
      assert.equal(records[0].client, client);
    } finally {
      await close();
      handler.close();
    }
  }
});
