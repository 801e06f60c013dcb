/**
 * The pieces the layout rests on: every error's code, status and headers;
 * the client table; the transport factory; the shared number reading.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLIENT_TABLE, CLIENTS, isClientName } from '../lib/clients/table.js';
import * as errors from '../lib/errors.js';
import { positiveNumber, secondsToMs } from '../lib/numbers.js';
import { applyMasterDefaults } from '../lib/salt/config.js';
import * as saltErrors from '../lib/salt/errors.js';
import { ZmqRequestChannel } from '../lib/salt/zmq-channel.js';
import { openRequestChannel } from '../lib/salt/transports.js';

describe('errors', () => {
  it('each HTTP error has its code, status and the headers its answer carries', () => {
    const cases: [errors.HttpError, string, number, Record<string, string>][] = [
      [new errors.BadRequestError('x'), 'SRW_ERR_BAD_REQUEST', 400, {}],
      [new errors.AuthenticationError('x'), 'SRW_ERR_AUTHENTICATION', 401, {}],
      [new errors.MethodNotAllowedError(), 'SRW_ERR_METHOD_NOT_ALLOWED', 405, { Allow: 'GET, HEAD, POST' }],
      [new errors.NotAcceptableError('x'), 'SRW_ERR_NOT_ACCEPTABLE', 406, {}],
      [new errors.UnsupportedMediaTypeError('x'), 'SRW_ERR_UNSUPPORTED_MEDIA_TYPE', 415, {}],
      [new errors.BodyTimeoutError(), 'SRW_ERR_BODY_TIMEOUT', 408, { Connection: 'close' }],
      [new errors.PayloadTooLargeError(), 'SRW_ERR_PAYLOAD_TOO_LARGE', 413, { Connection: 'close' }],
      [new errors.TooManyFailedLoginsError(42), 'SRW_ERR_TOO_MANY_FAILED_LOGINS', 429, { 'Retry-After': '42', Connection: 'close' }],
      [new errors.ServiceUnavailableError(), 'SRW_ERR_MASTER_UNAVAILABLE', 503, {}],
      [new errors.TooBusyError(), 'SRW_ERR_TOO_BUSY', 503, { 'Retry-After': '1', Connection: 'close' }],
      [new errors.ShuttingDownError(), 'SRW_ERR_SHUTTING_DOWN', 503, {}],
      [new errors.GatewayTimeoutError('x'), 'SRW_ERR_GATEWAY_TIMEOUT', 504, {}],
      [new errors.FunctionNotAvailableError('x.y'), 'SRW_ERR_FUNCTION_NOT_AVAILABLE', 400, {}],
      [new errors.RunnerNotStartedError('x.y', '1', 11), 'SRW_ERR_RUNNER_NOT_STARTED', 502, {}],
      [new errors.MasterPermissionError('x'), 'SRW_ERR_MASTER_PERMISSION', 503, {}],
      [new errors.ResultTooLargeError('x'), 'SRW_ERR_RESULT_TOO_LARGE', 507, {}],
      [new errors.ReaderTooSlowError(9_000_000, 8_388_608, '20261130040649398670'), 'SRW_ERR_READER_TOO_SLOW', 507, {}],
      [new errors.JobWaitLostError('20261130040649398670', 'job 20261130040649398670'), 'SRW_ERR_GATEWAY_TIMEOUT', 504, {}],
      [new errors.ShutdownCutWaitError('20261130040649398670'), 'SRW_ERR_SHUTDOWN_CUT_WAIT', 504, {}],
    ];
    for (const [err, code, status, headers] of cases) {
      assert.ok(err instanceof errors.HttpError);
      assert.equal(err.code, code);
      assert.equal(err.status, status);
      assert.deepEqual(err.headers, headers);
      assert.equal(err.name, err.constructor.name);
      assert.equal(err.stack, `${err.name}: ${err.message}`, 'a refusal carries no stack');
    }
    // ...and leaves the process's stack limit as it found it.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 7;
    new errors.BadRequestError('x');
    assert.equal(Error.stackTraceLimit, 7);
    Error.stackTraceLimit = limit;
    assert.match(String(new errors.MasterError('x').stack), /\n\s+at /, 'other errors keep theirs');
    assert.equal(new errors.ServiceUnavailableError().message, errors.MASTER_UNAVAILABLE_MESSAGE);
    assert.equal(new errors.TooBusyError().message, errors.TOO_BUSY_MESSAGE);
    // The bus-lost 504 is a GatewayTimeoutError that knows its job; cut by close(), the answer says the server is stopping.
    assert.ok(new errors.JobWaitLostError('1', 'job 1') instanceof errors.GatewayTimeoutError);
    assert.equal(new errors.JobWaitLostError('1', 'job 1').jid, '1');
    assert.equal(
      new errors.ShutdownCutWaitError('20261130040649398670').message,
      'The server is shutting down: it stopped waiting for job 20261130040649398670, which goes on on the master.',
    );
  });

  it('every other error has a distinct SRW_ERR_ code', () => {
    const others = [
      new errors.MasterError('x'),
      new errors.ClientGoneError(),
      new errors.AnswerAbortedError(),
      new errors.SendTimeoutError('x'),
      new saltErrors.ConfigError('x'),
      new saltErrors.RequestTimeoutError('x'),
      new saltErrors.ConnectionLostError('x'),
      new saltErrors.ChannelClosedError('x'),
      new saltErrors.EventBusTimeoutError('x'),
      new saltErrors.EventBusClosedError('x'),
      new saltErrors.FrameStreamError('x'),
      new saltErrors.ZmtpError('x'),
    ];
    const codes = others.map((err) => err.code);
    assert.equal(new Set(codes).size, codes.length);
    for (const code of codes) assert.match(code, /^SRW_ERR_[A-Z_]+$/);
    for (const err of others) assert.equal(err.name, err.constructor.name);
    // The master not answering, three ways: one base, which the dispatcher answers 503.
    const notAnswering = others.filter((err) => err instanceof saltErrors.MasterNotAnsweringError);
    assert.deepEqual(
      notAnswering.map((err) => err.constructor),
      [saltErrors.RequestTimeoutError, saltErrors.ConnectionLostError, saltErrors.ChannelClosedError],
    );
  });
});

describe('client table', () => {
  it("lists Salt's clients, and which of them wait for their job", () => {
    assert.deepEqual(CLIENTS, [
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
    const waiting = CLIENTS.filter((name) => CLIENT_TABLE[name].waitsForJob);
    assert.deepEqual(waiting, ['local', 'local_subset', 'local_batch', 'runner']);
    assert.equal(isClientName('local'), true);
    assert.equal(isClientName('toString'), false);
  });

  it('reads durations as ms when the item is read, falling back to the master', () => {
    const opts = applyMasterDefaults({ timeout: 7, gather_job_timeout: 3 });
    const low = { client: 'local', tgt: '*', fun: 'test.ping', timeout: '1.1' };
    assert.doesNotThrow(() => CLIENT_TABLE.local.prepare(low, opts));
    assert.throws(() => CLIENT_TABLE.local.prepare({ ...low, timeout: 0 }, opts), errors.BadRequestError);
    assert.throws(() => CLIENT_TABLE.local_subset.prepare({ ...low, subset: 'two' }, opts), errors.BadRequestError);
  });
});

describe('transports', () => {
  it('zeromq opens the ZeroMQ request channel (tcp and ws: test/salt/transports.test.ts)', () => {
    for (const transport of ['zeromq']) {
      const channel = openRequestChannel(applyMasterDefaults({ transport, ret_port: 1 }), { timeoutMs: 100 });
      assert.ok(channel instanceof ZmqRequestChannel);
      assert.equal(channel.pending, 0);
      channel.close();
    }
  });
});

describe('numbers', () => {
  it('positiveNumber reads numbers and numeric strings; secondsToMs gives whole ms', () => {
    assert.equal(positiveNumber(2), 2);
    assert.equal(positiveNumber(' 0.5 '), 0.5);
    for (const bad of [0, -1, '', ' ', 'x', Number.NaN, Number.POSITIVE_INFINITY, null, true]) assert.equal(positiveNumber(bad), undefined);
    assert.equal(secondsToMs(1.1), 1100);
  });
});
