/**
 * The server process of the scale cases (bench/scale.ts, bench/real-scale.ts):
 * the real command (dist/bin/salt-rest-wsgi.js) started on a master's config,
 * waited for until idle, stopped; its CPU (all threads, or by thread) and
 * its memory read from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** SCALE_SERVER=<path of another build's dist/bin/salt-rest-wsgi.js>: measure that one (a baseline) beside the same double. */
const SERVER = process.env.SCALE_SERVER ?? fileURLToPath(new URL('../dist/bin/salt-rest-wsgi.js', import.meta.url));
const CLOCK_TICK_MS = 1000 / 100; // USER_HZ

export function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU ticks (user, system) of each of `pid`'s threads, by name, summed over threads of one name. */
export function threadTicks(pid: number): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) + (tid === String(pid) ? '*' : '');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const had = out.get(name) ?? [0, 0];
      out.set(name, [had[0] + Number(f[11]), had[1] + Number(f[12])]);
    } catch {
      // a thread that ended while being read
    }
  }
  return out;
}

/** What each thread spent between two threadTicks(), in ms. */
export function threadDiff(a: Map<string, [number, number]>, b: Map<string, [number, number]>): string {
  return [...b]
    .map(([k, [u, s]]) => `${k} u${(u - (a.get(k)?.[0] ?? 0)) * CLOCK_TICK_MS} s${(s - (a.get(k)?.[1] ?? 0)) * CLOCK_TICK_MS}`)
    .filter((x) => !/u0 s0$/.test(x))
    .join(', ');
}

export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS; // utime, stime
}

/**
 * Wait for the fresh server to settle: connected to the bus, and done with
 * what start-up leaves (V8 collects start-up garbage, a major GC of some
 * 20 ms, a few hundred ms after start), so that the CPU measured is the
 * request's own. Settled: no CPU tick in 300 ms, at least 300 ms after start.
 */
export async function settled(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  let last = cpuMs(pid);
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(50);
    const now = cpuMs(pid);
    if (now !== last) quietSince = Date.now();
    last = now;
    if (Date.now() - quietSince >= 300) return;
  }
}

export async function startServer(configPath: string): Promise<{ child: ChildProcess; port: number }> {
  // SCALE_CPU_PROF=<dir>: a V8 CPU profile of each case's server, written when it exits;
  // SCALE_CPU_PROF_US: its sampling interval (V8's default, 1000 µs, gives a fleet a few hundred samples).
  const prof = process.env.SCALE_CPU_PROF
    ? ['--cpu-prof', '--cpu-prof-dir', process.env.SCALE_CPU_PROF, '--cpu-prof-interval', process.env.SCALE_CPU_PROF_US ?? '1000']
    : [];
  const child = spawn(
    process.execPath,
    [...prof, ...(process.env.SCALE_SERVER_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), SERVER, '-c', configPath, '--port', '0'],
    { stdio: ['ignore', process.env.SCALE_SERVER_STDOUT ? 'inherit' : 'ignore', 'pipe'] },
  );
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /listening on http:\/\/[^:]+:(\d+)\//.exec(err);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
  return { child, port };
}

export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(process.env.SCALE_CPU_PROF ? 'SIGINT' : 'SIGKILL');
  await exited;
}
