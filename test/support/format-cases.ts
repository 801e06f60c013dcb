/**
 * The same requests as a form-encoded body and as a YAML body, each with
 * the data Salt's rest_cherrypy `/run` answers on a real 3007.1 master
 * (eauth `auto`: `saltdev` may do everything; minion `minion1`, silent
 * `ghost1`): test/real-master.test.ts sends them to both servers and
 * compares, test/http/formats.test.ts checks the double gives the same.
 */
type Pairs = Array<[string, string]>;

export interface FormatCase {
  name: string;
  form: Pairs;
  yaml: string;
  status: number;
  /** The `return` list (normalized: see normalize()), or the refusal's message. */
  expect: unknown;
  /** Waits for the silent minion. */
  slow?: boolean;
}

const SALTDEV: Pairs = [
  ['eauth', 'auto'],
  ['username', 'saltdev'],
  ['password', 'x'],
];
const SALTDEV_YAML = '  eauth: auto\n  username: saltdev\n  password: x\n';

export const FORMAT_CASES: FormatCase[] = [
  {
    name: "test.ping to '*'",
    form: [['client', 'local'], ['tgt', '*'], ['fun', 'test.ping'], ['timeout', '1'], ['gather_job_timeout', '1'], ...SALTDEV],
    yaml: `- client: local\n  tgt: '*'\n  fun: test.ping\n  timeout: 1\n  gather_job_timeout: 1\n${SALTDEV_YAML}`,
    status: 200,
    expect: [{ minion1: true, ghost1: false }],
    slow: true,
  },
  {
    name: 'test.arg with repeated arg (numbers, lists, mappings, k=v, booleans, None) and a kwarg',
    form: [
      ['client', 'local'],
      ['tgt', 'minion1'],
      ['fun', 'test.arg'],
      ...['1', '[a, 2]', 'k=v', 'yes', '1.5', 'None', '010', '{a: 1}', 'a: b'].map((arg): [string, string] => ['arg', arg]),
      ['kwarg', '{x: 3, y: [1]}'],
      ...SALTDEV,
    ],
    yaml: `client: local\ntgt: minion1\nfun: test.arg\narg: [1, [a, 2], k=v, yes, 1.5, null, 10, {a: 1}, 'a: b']\nkwarg: {x: 3, y: [1]}\n${SALTDEV_YAML.replace(/^ {2}/gm, '')}`,
    status: 200,
    expect: [
      {
        minion1: {
          args: [1, ['a', 2], true, 1.5, null, 10, { a: 1 }, 'a: b'],
          kwargs: {
            k: 'v',
            x: 3,
            y: [1],
            __pub_fun: 'test.arg',
            __pub_arg: [1, ['a', 2], 'k=v', true, 1.5, null, 10, { a: 1 }, 'a: b', { __kwarg__: true, x: 3, y: [1] }],
            __pub_tgt: 'minion1',
            __pub_ret: '',
            __pub_tgt_type: 'glob',
            __pub_user: 'saltdev',
          },
        },
      },
    ],
  },
  {
    name: 'a runner with arg (a big integer exact) and a kwarg',
    form: [
      ['client', 'runner'],
      ['fun', 'test.arg'],
      ...['1', '[a, b]', 'k=v', '12345678901234567890'].map((arg): [string, string] => ['arg', arg]),
      ['kwarg', '{z: no}'],
      ...SALTDEV,
    ],
    yaml: `- client: runner\n  fun: test.arg\n  arg: [1, [a, b], k=v, 12345678901234567890]\n  kwarg: {z: no}\n${SALTDEV_YAML}`,
    status: 200,
    expect: [{ args: [1, ['a', 'b'], 12345678901234567890n], kwargs: { k: 'v', z: false } }],
  },
  {
    name: 'a wheel call',
    form: [['client', 'wheel'], ['fun', 'key.list_all'], ...SALTDEV],
    yaml: `- client: wheel\n  fun: key.list_all\n${SALTDEV_YAML}`,
    status: 200,
    expect: [
      {
        data: {
          fun: 'wheel.key.list_all',
          user: 'saltdev',
          return: {
            minions: ['ghost1', 'minion1'],
            minions_pre: [],
            minions_rejected: [],
            minions_denied: [],
            local: ['master.pem', 'master.pub'],
          },
          success: true,
        },
      },
    ],
  },
  {
    name: 'credentials the master refuses',
    form: [
      ['client', 'local'],
      ['tgt', 'minion1'],
      ['fun', 'test.ping'],
      ['eauth', 'auto'],
      ['username', 'nobody'],
      ['password', 'wrong'],
    ],
    yaml: '- client: local\n  tgt: minion1\n  fun: test.ping\n  eauth: auto\n  username: nobody\n  password: wrong\n',
    status: 401,
    expect: 'Authorization error occurred.',
  },
  {
    name: 'a disabled client',
    form: [['client', 'ssh'], ['tgt', '*'], ['fun', 'test.ping'], ...SALTDEV],
    yaml: `- client: ssh\n  tgt: '*'\n  fun: test.ping\n${SALTDEV_YAML}`,
    status: 400,
    expect: "Client disabled: 'ssh'. Add to 'netapi_enable_clients' master config option to enable.",
  },
];

/** What differs from job to job (jids, tags, time stamps) and the keys the master's own files add (the wheel's `local` keys) left out. */
export function normalize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normalize);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (!['jid', 'tag', '_stamp', '__pub_jid'].includes(key)) out[key] = normalize(item);
  }
  return out;
}

/** The form of a case as a body. */
export function formBody(pairs: Pairs): string {
  return new URLSearchParams(pairs).toString();
}
