/**
 * `npm run demo [-- --port N] [--write-env FILE]`: the README's curls on a
 * machine without Salt. The master double (test/support/master.ts) plays a
 * small fleet, and the real command serves it on :8001 (or --port N).
 * Ctrl-C stops both. What the examples need to run against it (the master
 * config's path, a user, their port 8002) it writes to .demo.env in the
 * checkout (or FILE), removed when it stops: `node --env-file=.demo.env
 * examples/<name>.mjs`.
 *
 * It is for trying the API, not a fallback: the command never starts a demo
 * master by itself.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startMaster } from './master.js';
import { BIN, repoRoot } from './command.js';

const PASSWORD = 'saltdev';
/** The examples' port: beside the demo's own 8001. */
const EXAMPLE_PORT = 8002;
const { values } = parseArgs({
  options: { port: { type: 'string', default: '8001' }, 'write-env': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (values.help || !/^\d+$/.test(values.port!)) {
  process.stderr.write('Usage: npm run demo [-- --port N] [--write-env FILE]   (default 8001, .demo.env)\n');
  process.exit(values.help ? 0 : 2);
}

const master = await startMaster({
  minions: [{ id: 'minion1' }, { id: 'minion2' }, { id: 'ghost1', silent: true }],
  users: { saltdev: { password: PASSWORD, permissions: ['.*', '@runner', '@wheel', '@jobs'] } },
  eauthBackends: ['pam', 'auto'],
  // A dead minion maps to false after timeout + gather_job_timeout: 2 s here rather than Salt's 5 + 10.
  config: { rest_wsgi: { port: Number(values.port) }, timeout: 1, gather_job_timeout: 1 },
});

const envFile = values['write-env'] ?? join(repoRoot, '.demo.env');
writeFileSync(
  envFile,
  `# Written by npm run demo, removed when it stops: what the examples read, to run against it:
#   node --env-file=${envFile} examples/<name>.mjs
SALT_MASTER_CONFIG=${master.configPath}
SALT_EAUTH=pam
SALT_USER=saltdev
SALT_PASSWORD=${PASSWORD}
PORT=${EXAMPLE_PORT}
`,
);
process.once('exit', () => rmSync(envFile, { force: true }));

const server = spawn(process.execPath, ['--import', 'tsx', BIN, '-c', master.configPath], {
  cwd: repoRoot,
  stdio: ['ignore', 'inherit', 'pipe'],
});
let stopping = false;
const serverExited = new Promise((resolve) => server.once('exit', resolve));
const stop = async (code: number, serverSignalled = false) => {
  if (stopping) return;
  stopping = true;
  if (server.exitCode === null && server.signalCode === null) {
    // Ctrl-C reached the server too (same process group): a second signal would make it exit at once, status 1.
    const signalled =
      serverSignalled && (await Promise.race([serverExited.then(() => true), new Promise((r) => setTimeout(r, 2000, false))]));
    if (!signalled) server.kill('SIGTERM');
    await serverExited;
  }
  await master.close();
  process.exit(code);
};
// Ctrl-C reaches the server too (same process group); SIGTERM to us alone is passed on.
process.on('SIGINT', () => void stop(0, true));
process.on('SIGTERM', () => void stop(0));
server.once('exit', (code) => {
  if (!stopping) void stop(code === 0 ? 0 : 1);
});

let seen = '';
server.stderr!.setEncoding('utf8').on('data', (text: string) => {
  process.stderr.write(text);
  if (seen === null) return;
  seen += text;
  const listening = /listening on (https?:\/\/[^ ]+\/)/.exec(seen);
  if (!listening) return;
  seen = null as unknown as string;
  const port = new URL(listening[1]).port;
  process.stdout.write(`
salt-rest-wsgi demo: the server above, in front of a stand-in Salt master (no Salt needed)
  minions   minion1, minion2 (answer at once), ghost1 (an accepted key whose minion is down: false after 2 s)
  user      saltdev, password ${PASSWORD}, on eauth pam and auto; every netapi client enabled
  master    ${master.configPath} (timeout 1 s, gather_job_timeout 1 s)
  examples  node --env-file=${envFile} examples/node-http.mjs   (its settings; the example on :${EXAMPLE_PORT})
Try (every curl of the README works here), then Ctrl-C to stop both:
  curl -sS -H 'Content-Type: application/json' \\
      -d '[{"eauth":"pam","username":"saltdev","password":"${PASSWORD}","client":"local","tgt":"*","fun":"test.ping"}]' localhost:${port}
`);
});
