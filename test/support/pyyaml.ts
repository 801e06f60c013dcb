/**
 * An independent YAML 1.1 reader for the YAML answers: Python's PyYAML
 * (Debian's python3-yaml), when /usr/bin/python3 has it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

/** Whether /usr/bin/python3 imports yaml. */
export const PYYAML = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import yaml'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** What differs between two runs of a request: job ids, tags, time stamps, tokens and their times. */
const RUN_KEYS = ['jid', 'tag', '_stamp', '__pub_jid', 'token', 'start', 'expire'];

const SCRIPT = [
  'import json,sys,yaml',
  'def n(v):',
  '  if isinstance(v, list): return [n(x) for x in v]',
  `  if isinstance(v, dict): return {k: n(x) for k, x in v.items() if k not in ${JSON.stringify(RUN_KEYS).replace(/^\[/, '(').replace(/\]$/, ')')}}`,
  '  return v',
  'd=json.load(sys.stdin)',
  'sys.stdout.write("same" if n(yaml.safe_load(d["y"]))==n(json.loads(d["j"])) else "differ")',
].join('\n');

/** PyYAML's safe_load of `yaml` is Python's json.loads of `json` (what differs between runs aside); passes when PyYAML is missing. */
export function assertSameData(yaml: string, json: string, what = ''): void {
  if (!PYYAML) return;
  const out = execFileSync('/usr/bin/python3', ['-c', SCRIPT], { input: JSON.stringify({ y: yaml, j: json }) }).toString();
  assert.equal(out, 'same', `${what}\nPyYAML reads\n${yaml}\nas other data than\n${json}`);
}
