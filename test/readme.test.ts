/**
 * The README's first five minutes (issue 14): its demo command started as
 * the README says (`npm run demo`, on a free port instead of 8001), then
 * every curl of the README run verbatim through sh, each answer compared
 * with the README's, jids, dates and time stamps aside (```console blocks are
 * what runs against the demo; a ```text block shows a broken setup's output,
 * as under "Permission denied"). CI's checkout is a
 * fresh clone after `npm ci`, which is what the README's first block asks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './support/command.js';
import { PYYAML, assertSameData } from './support/pyyaml.js';

const sh = promisify(execFile);

interface Example {
  command: string;
  output: string;
}

/** `$ ` commands of the README's ```console blocks (continued while a quote is open or a line ends in `\`), each with the lines after it. */
export function consoleExamples(readme: string): Example[] {
  const examples: Example[] = [];
  for (const [, block] of readme.matchAll(/```console\n([\s\S]*?)```/g)) {
    const lines = block.replace(/\n$/, '').split('\n');
    let current: Example | undefined;
    let continued = false;
    for (const line of lines) {
      if (continued) {
        current!.command += `\n${line}`;
      } else if (line.startsWith('$ ')) {
        current = { command: line.slice(2), output: '' };
        examples.push(current);
      } else {
        current!.output += `${line}\n`;
        continue;
      }
      const quotes = (current!.command.match(/'/g) ?? []).length;
      continued = quotes % 2 === 1 || current!.command.endsWith('\\');
    }
  }
  return examples;
}

/** What may differ between two runs: job ids, dates, Salt's time stamps, tokens; and curl -i's CRLFs. */
function normalize(text: string): string {
  return (
    text
      .replace(/\r\n/g, '\n')
      .replace(/^Date: .*$/gm, 'Date: <date>')
      .replace(/^X-Request-Id: [0-9a-f-]{36}$/gim, 'X-Request-Id: <uuid>')
      .replace(/\b\d{20}\b/g, '<jid>')
      .replace(/"_stamp":"[^"]+"/g, '"_stamp":"<stamp>"')
      // A token the master makes (auth.mk_token), and its times.
      .replace(/"token":"[0-9a-f]{64}"/g, '"token":"<token>"')
      .replace(/"(start|expire)":\d+(\.\d+)?/g, '"$1":<time>')
  );
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('the README: its first block installs and runs the demo; every curl of the README answers as shown against the demo', {
  timeout: 120_000,
}, async (t) => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const first = /```sh\n([\s\S]*?)```/.exec(readme)![1];
  const commands = first
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean);
  assert.match(commands[0], /^git clone \S+ salt-rest-wsgi && cd salt-rest-wsgi$/);
  assert.deepEqual(commands.slice(1), ['npm ci', 'npm run demo']);
  assert.match(readme, /```sh\nnpm start -- -c \/etc\/salt\/master\n/);

  const examples = consoleExamples(readme);
  const curls = examples.filter((e) => e.command.startsWith('curl '));
  assert.equal(curls.length, examples.length, 'every console example is a curl');
  assert.ok(curls.length >= 7, `${curls.length} curls found in the README`);
  for (const { command } of curls) assert.match(command, /localhost:8001$/);

  // The README's demo command, in its own process group as a terminal runs it; Ctrl-C is SIGINT to the group.
  const port = await freePort();
  const demo = spawn('npm', ['run', 'demo', '--', '--port', String(port)], {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(demo, 'exit');
  t.after(() => {
    if (demo.exitCode === null && demo.signalCode === null) process.kill(-demo.pid!, 'SIGKILL');
  });
  let out = '';
  let err = '';
  demo.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    demo.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (/Ctrl-C to stop both:\n[\s\S]*localhost:\d+\n/.test(out)) resolve();
    });
    demo.once('exit', () => reject(new Error(`the demo exited:\n${out}\n${err}`)));
  });
  assert.match(out, /minions +minion1, minion2 .*ghost1/);
  assert.match(out, /user +saltdev, password saltdev, on eauth pam and auto/);
  // The curl it prints is the README's first.
  const printed = out
    .slice(out.indexOf('  curl '))
    .replace(/\n {2}/g, '\n')
    .trim();
  assert.equal(printed.replace(`localhost:${port}`, 'localhost:8001'), curls[0].command.replace(' -i ', ' '));

  let yamlChecked = 0;
  for (const { command, output } of curls) {
    const ran = await sh('sh', ['-c', command.replaceAll('localhost:8001', `localhost:${port}`)]).catch(
      (e: Error & { stdout: string; stderr: string }) => e,
    );
    assert.equal(ran.stderr, '', command);
    assert.equal(normalize(ran.stdout.endsWith('\n') ? ran.stdout : `${ran.stdout}\n`), normalize(output), command);
    // The YAML answer of the same request is the same data (README: Formats), read by a YAML 1.1 reader.
    if (output.startsWith('{') && !command.includes('Accept:')) {
      const yaml = await sh('sh', [
        '-c',
        command.replace(/^curl /, "curl -H 'Accept: application/x-yaml' ").replaceAll('localhost:8001', `localhost:${port}`),
      ]);
      assertSameData(yaml.stdout, output, command);
      yamlChecked++;
    }
  }
  if (PYYAML) assert.ok(yamlChecked >= 8, `${yamlChecked} YAML answers checked`);
  console.log(
    `the YAML answers of ${yamlChecked} README examples are their JSON answers' data${PYYAML ? '' : ' (not checked: no python3 yaml)'}`,
  );

  process.kill(-demo.pid!, 'SIGINT');
  const [code] = await exited;
  assert.equal(code, 0, err);
  assert.match(err, /INFO  SIGINT: stopping\n.*INFO  stopped\n/s);
  assert.doesNotMatch(err, /again: exiting now/);
});
