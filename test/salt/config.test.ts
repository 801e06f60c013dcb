import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { applyMasterDefaults, loadMasterConfig } from '../../lib/salt/config.js';
import { ConfigError } from '../../lib/salt/errors.js';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh config dir holding `files` (name → text); returns the dir. */
function confDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'salt-conf-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** Run `fn` with SALT_MASTER_CONFIG set to `value` (or unset), restoring it after. */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.SALT_MASTER_CONFIG;
  if (value === undefined) delete process.env.SALT_MASTER_CONFIG;
  else process.env.SALT_MASTER_CONFIG = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.SALT_MASTER_CONFIG;
    else process.env.SALT_MASTER_CONFIG = saved;
  }
}

describe('master config defaults', () => {
  it("applies Salt's DEFAULT_MASTER_OPTS to an empty file", () => {
    const dir = confDir({ master: '' });
    const opts = loadMasterConfig(path.join(dir, 'master'));
    assert.equal(opts.conf_file, path.join(dir, 'master'));
    assert.equal(opts.root_dir, '/');
    assert.equal(opts.interface, '0.0.0.0');
    assert.equal(opts.ret_port, 4506);
    assert.equal(opts.sock_dir, '/var/run/salt/master');
    assert.equal(opts.cachedir, '/var/cache/salt/master');
    assert.equal(opts.pki_dir, '/etc/salt/pki/master');
    assert.equal(opts.ipc_mode, 'ipc');
    assert.equal(opts.tcp_master_pub_port, 4512);
    assert.equal(opts.transport, 'zeromq');
    assert.equal(opts.timeout, 5);
    assert.equal(opts.gather_job_timeout, 10);
    assert.deepEqual(opts.netapi_enable_clients, []);
    assert.equal(opts.netapi_allow_raw_shell, false);
    assert.equal(opts.default_include, 'master.d/*.conf');
  });

  it('keeps the options the file sets, including ones it does not know', () => {
    const dir = confDir({
      master: [
        'interface: 127.0.0.2',
        'ret_port: 14506',
        'timeout: 0.25',
        'netapi_enable_clients: [local, runner]',
        'netapi_allow_raw_shell: yes', // YAML 1.1 boolean, as PyYAML reads it
        'rest_wsgi: {port: 8001, host: 127.0.0.1}',
        'external_auth: {auto: {saltdev: [".*"]}}',
      ].join('\n'),
    });
    const opts = loadMasterConfig(path.join(dir, 'master'));
    assert.equal(opts.interface, '127.0.0.2');
    assert.equal(opts.ret_port, 14506);
    assert.equal(opts.timeout, 0.25);
    assert.deepEqual(opts.netapi_enable_clients, ['local', 'runner']);
    assert.equal(opts.netapi_allow_raw_shell, true);
    assert.deepEqual(opts.rest_wsgi, { port: 8001, host: '127.0.0.1' });
    assert.deepEqual(opts.external_auth, { auto: { saltdev: ['.*'] } });
  });

  it('reads `netapi_enable_clients:` left empty as none enabled', () => {
    const dir = confDir({ master: 'netapi_enable_clients:\n' });
    assert.deepEqual(loadMasterConfig(path.join(dir, 'master')).netapi_enable_clients, []);
  });

  it('does not share the default list between results', () => {
    const a = applyMasterDefaults({});
    a.netapi_enable_clients.push('local');
    assert.deepEqual(applyMasterDefaults({}).netapi_enable_clients, []);
  });
});

describe('root_dir', () => {
  it('is prepended to sock_dir, cachedir and pki_dir, defaults or not', () => {
    const dir = confDir({ master: 'root_dir: /srv/salt-root\nsock_dir: /run/custom\n' });
    const opts = loadMasterConfig(path.join(dir, 'master'));
    assert.equal(opts.root_dir, '/srv/salt-root');
    assert.equal(opts.sock_dir, '/srv/salt-root/run/custom');
    assert.equal(opts.cachedir, '/srv/salt-root/var/cache/salt/master');
    assert.equal(opts.pki_dir, '/srv/salt-root/etc/salt/pki/master');
  });

  it('is not prepended twice to a path already under it, and roots relative paths', () => {
    const opts = applyMasterDefaults({ root_dir: '/srv/r', sock_dir: '/srv/r/sock', cachedir: 'cache' });
    assert.equal(opts.sock_dir, '/srv/r/sock');
    assert.equal(opts.cachedir, '/srv/r/cache');
    // Applying defaults again to a finished result changes nothing.
    assert.deepEqual(applyMasterDefaults(opts), opts);
  });
});

describe('includes', () => {
  it('merges master.d/*.conf (default_include) in sorted order over the main file', () => {
    const dir = confDir({
      master: 'ret_port: 1111\ntimeout: 7\nexternal_auth: {auto: {alice: [a]}}\n',
      'master.d/20-late.conf': 'ret_port: 3333\n',
      'master.d/10-early.conf': 'ret_port: 2222\nnetapi_enable_clients: [local]\nexternal_auth: {auto: {bob: [b]}}\n',
      'master.d/30-more.conf': 'netapi_enable_clients: [runner, local]\nexternal_auth: {auto: {carol: [c]}}\n',
      'master.d/ignored.txt': 'ret_port: 9999\n',
      'master.d/.hidden.conf': 'ret_port: 9998\n',
    });
    const opts = loadMasterConfig(path.join(dir, 'master'));
    assert.equal(opts.ret_port, 3333);
    assert.equal(opts.timeout, 7);
    // Include files merge into each other (dicts merged, lists extended)...
    assert.deepEqual(opts.netapi_enable_clients, ['local', 'runner']);
    assert.deepEqual(opts.external_auth, { auto: { bob: ['b'], carol: ['c'] } });
  });

  it('is fine without a master.d directory', () => {
    const dir = confDir({ master: 'ret_port: 1111\n' });
    assert.equal(loadMasterConfig(path.join(dir, 'master')).ret_port, 1111);
  });

  it('follows a changed default_include', () => {
    const dir = confDir({
      master: 'default_include: conf.d/*.yml\n',
      'conf.d/a.yml': 'ret_port: 4444\n',
      'master.d/b.conf': 'ret_port: 5555\n',
    });
    assert.equal(loadMasterConfig(path.join(dir, 'master')).ret_port, 4444);
  });

  it('follows explicit include entries, relative and absolute, and includes within them', () => {
    const other = confDir({ 'abs.conf': 'gather_job_timeout: 3\n' });
    const dir = confDir({
      master: `include:\n  - extra/one.conf\n  - ${path.join(other, 'abs.conf')}\n`,
      'extra/one.conf': 'ret_port: 6666\ninclude: nested.conf\n',
      'extra/nested.conf': 'tcp_master_pub_port: 7777\n',
    });
    const opts = loadMasterConfig(path.join(dir, 'master'));
    assert.equal(opts.ret_port, 6666);
    assert.equal(opts.tcp_master_pub_port, 7777);
    assert.equal(opts.gather_job_timeout, 3);
  });

  it('applies explicit includes after default_include', () => {
    const dir = confDir({ master: 'include: late.conf\n', 'master.d/a.conf': 'ret_port: 1\n', 'late.conf': 'ret_port: 2\n' });
    assert.equal(loadMasterConfig(path.join(dir, 'master')).ret_port, 2);
  });

  it('reports an include loop instead of recursing forever', () => {
    const dir = confDir({ master: 'include: a.conf\n', 'a.conf': 'include: b.conf\n', 'b.conf': 'include: a.conf\n' });
    assert.throws(
      () => loadMasterConfig(path.join(dir, 'master')),
      (err: Error) => err instanceof ConfigError && /include loop/.test(err.message),
    );
  });
});

describe('which file', () => {
  it('uses SALT_MASTER_CONFIG when no path is given', () => {
    const dir = confDir({ master: 'ret_port: 8888\n' });
    const opts = withEnv(path.join(dir, 'master'), () => loadMasterConfig());
    assert.equal(opts.ret_port, 8888);
    assert.equal(opts.conf_file, path.join(dir, 'master'));
  });

  it('prefers the path given over SALT_MASTER_CONFIG', () => {
    const a = confDir({ master: 'ret_port: 1001\n' });
    const b = confDir({ master: 'ret_port: 1002\n' });
    assert.equal(withEnv(path.join(a, 'master'), () => loadMasterConfig(path.join(b, 'master'))).ret_port, 1002);
  });

  it('falls back to /etc/salt/master', () => {
    // Whatever this machine has there, the error or the result names that file.
    try {
      assert.equal(withEnv(undefined, () => loadMasterConfig()).conf_file, '/etc/salt/master');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /\/etc\/salt\/master\b/);
    }
  });
});

describe('errors', () => {
  function oneLineError(fn: () => unknown, pattern: RegExp): void {
    assert.throws(fn, (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.ok(!err.message.includes('\n'), `one line: ${JSON.stringify(err.message)}`);
      assert.match(err.message, pattern);
      return true;
    });
  }

  it('names a missing file', () => {
    const missing = path.join(confDir({}), 'nope', 'master');
    oneLineError(() => loadMasterConfig(missing), new RegExp(`^Cannot read master config ${escape(missing)}: no such file$`));
  });

  it('names a file it may not read', { skip: process.getuid?.() === 0 ? 'root reads every file' : false }, () => {
    const dir = confDir({ master: 'ret_port: 1\n' });
    chmodSync(path.join(dir, 'master'), 0o000);
    oneLineError(() => loadMasterConfig(path.join(dir, 'master')), /Cannot read master config .*master: permission denied/);
  });

  it('names a directory given as the file', () => {
    const dir = confDir({});
    oneLineError(() => loadMasterConfig(dir), new RegExp(`Cannot read master config ${escape(dir)}: is a directory`));
  });

  it('names a file with invalid YAML, with the parser position', () => {
    const dir = confDir({ master: 'ret_port: [4506\ninterface: x\n' });
    oneLineError(
      () => loadMasterConfig(path.join(dir, 'master')),
      new RegExp(`^Invalid YAML in master config ${escape(path.join(dir, 'master'))}: .*line \\d+`),
    );
  });

  it('shows the offending source line of a YAML error on its one line', () => {
    const dir = confDir({ master: 'rest_wsgi:\n  port: 8001\n host: 0.0.0.0\n' });
    oneLineError(
      () => loadMasterConfig(path.join(dir, 'master')),
      /: All mapping items must start at the same column at line 3, column 1: " host: 0\.0\.0\.0"$/,
    );
  });

  it('names an included file with invalid YAML', () => {
    const dir = confDir({ master: 'ret_port: 1\n', 'master.d/bad.conf': 'a: b: c\n' });
    oneLineError(
      () => loadMasterConfig(path.join(dir, 'master')),
      new RegExp(`Invalid YAML in master config ${escape(path.join(dir, 'master.d', 'bad.conf'))}`),
    );
  });

  it('rejects a file that is not a mapping', () => {
    const dir = confDir({ master: '- just\n- a list\n' });
    oneLineError(() => loadMasterConfig(path.join(dir, 'master')), /expected a mapping of options, got a list/);
  });

  it('rejects options of the wrong kind, naming the option', () => {
    const dir = confDir({ master: 'ret_port: abc\n' });
    oneLineError(() => loadMasterConfig(path.join(dir, 'master')), /master config .*: ret_port must be a port number, got "abc"/);
    oneLineError(() => applyMasterDefaults({ timeout: -1 }), /^Invalid master options: timeout must be a number of seconds, got -1$/);
    oneLineError(
      () => applyMasterDefaults({ netapi_enable_clients: 'local' as unknown as string[] }),
      /netapi_enable_clients must be a list/,
    );
  });

  it('accepts numbers written as strings, as Salt does', () => {
    const opts = applyMasterDefaults({ ret_port: '4510' as unknown as number, timeout: '2' as unknown as number });
    assert.equal(opts.ret_port, 4510);
    assert.equal(opts.timeout, 2);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
