/**
 * lib/http/audit.ts on its own: the record made from an item, its text line
 * (logfmt, one line whatever the values hold) and its JSON fields, which
 * must say the same thing in the same order. The records of real requests,
 * per client, are in test/operations.test.ts.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { MASK, auditFields, auditJson, auditRecord, formatAudit, isoTime, type AuditRecord } from '../../lib/http/audit.js';

const SCOPE = { requestId: 'req-1', address: '10.0.0.7', auditArgs: true };

/** The JSON fields, values as text, to compare with a parsed line. */
function textFields(record: AuditRecord): [string, string][] {
  return Object.entries(auditFields(record)).map(([k, v]) => [k, String(v)]);
}

/** A logfmt line back to its fields, values as text: `key=value` with value bare or a JSON string. */
function parseLogfmt(line: string): [string, string][] {
  const fields: [string, string][] = [];
  const field = /([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)/y;
  let at = line.indexOf(' ') + 1;
  while (at > 0 && at < line.length) {
    field.lastIndex = at;
    const m = field.exec(line);
    assert.ok(m, `a field at ${at} of ${line}`);
    const raw = m[2];
    fields.push([m[1], raw.startsWith('"') ? JSON.parse(raw) : raw]);
    at = field.lastIndex + 1;
  }
  return fields;
}

function hostile(): AuditRecord {
  const low = {
    client: 'local',
    fun: 'cmd.run',
    tgt: 'web*\nFORGED audit line',
    tgt_type: 'glob',
    eauth: 'pam',
    username: 'ops "admin" = x\u2028\u2029\u007f\u0000',
    password: 'hunter2',
    arg: ['echo hunter2', 'passwd=other', 'ok'],
    kwarg: { api_key: 'k', path: '/tmp' },
  };
  return auditRecord(
    { ...SCOPE, cn: 'ops console' },
    low,
    { jid: '20261204203000123456', targeted: 3, returned: 2, missing: 1 },
    200,
    12.345,
  );
}

test('the text line is one line, whatever the values hold, and parses back to the JSON fields in their order', () => {
  const record = hostile();
  const line = formatAudit(record);
  assert.equal(line.split(/[\n\r\u2028\u2029\u0085]/).length, 1, line);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
  assert.doesNotMatch(line, /[\u0000-\u001f\u007f]/);
  assert.ok(line.startsWith('audit time='), line);
  assert.deepEqual(parseLogfmt(line), textFields(record));
  assert.deepEqual(JSON.parse(auditJson(record)), { msg: 'audit', ...auditFields(record) });
});

test('fields left unset are left out of both forms, in the same order', () => {
  const record = auditRecord({ ...SCOPE, auditArgs: false }, { client: 'runner', fun: 'jobs.list_jobs', token: 't0k3n' }, {}, 401, 0.04);
  const line = formatAudit(record);
  assert.equal(
    line.replace(/ time=\S+/, ''),
    'audit request_id=req-1 address=10.0.0.7 username=(token) client=runner fun=jobs.list_jobs status=401 duration_ms=0',
  );
  assert.deepEqual(parseLogfmt(line), textFields(record));
  assert.deepEqual(Object.keys(auditFields(record)), [
    'time',
    'request_id',
    'address',
    'username',
    'client',
    'fun',
    'status',
    'duration_ms',
  ]);
});

test('never the password: masked in arguments by key, as key=value, and wherever the item used it', () => {
  const record = hostile();
  for (const text of [formatAudit(record), auditJson(record)]) assert.doesNotMatch(text, /hunter2|other/);
  assert.deepEqual(JSON.parse(String(record.args)), { arg: [MASK, `passwd=${MASK}`, 'ok'], kwarg: { api_key: MASK, path: '/tmp' } });
  assert.equal(record.durationMs, 12.345);
  assert.match(formatAudit(record), / duration_ms=12\.3 targeted=3 returned=2 missing=1 args=/);
});

test('an item that is not an object: client `?`, nothing else from it', () => {
  const record = auditRecord(SCOPE, ['not', 'a', 'map'], {}, 400, 1);
  assert.deepEqual(
    parseLogfmt(formatAudit(record)).map(([k]) => k),
    ['time', 'request_id', 'address', 'client', 'status', 'duration_ms'],
  );
  assert.equal(record.client, '?');
});

test('arguments: none gives {}; a `__proto__` key is kept as an argument, masked like the others', () => {
  assert.equal(
    auditRecord(SCOPE, { client: 'local', tgt: '*', fun: 'test.ping', eauth: 'pam', username: 'u', password: 'p' }, {}, 200, 1).args,
    '{}',
  );
  const low = JSON.parse('{"client":"local","tgt":"*","fun":"test.arg","__proto__":{"secret":"s","x":1},"kwarg":{"__proto__":"y"}}');
  assert.deepEqual(
    JSON.parse(String(auditRecord(SCOPE, low, {}, 200, 1).args)),
    JSON.parse('{"__proto__":{"secret":"***","x":1},"kwarg":{"__proto__":"y"}}'),
  );
});

test('the time is Date#toISOString of the moment, to the millisecond, across seconds', () => {
  const base = Date.UTC(2026, 11, 31, 23, 59, 59, 0);
  for (const ms of [base, base + 7, base + 42, base + 999, base + 1000, base + 1001, base - 1, 0, 999, 1_000_000_000_123]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
  const before = Date.now();
  const { time } = auditRecord(SCOPE, {}, {}, 200, 1);
  assert.ok(Date.parse(time) >= before && Date.parse(time) <= Date.now(), time);
});
