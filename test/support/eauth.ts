/**
 * External authentication for the test master double: salt/auth/__init__.py
 * (LoadAuth: authenticate_eauth, mk_token, get_tok, check_authentication) and
 * the ACL checks of salt/utils/minions.py (auth_check for publish, spec_check
 * for runner and wheel), over a table of users.
 *
 * The model: an eauth backend named in `backends` is "enabled" (as if listed
 * in the master's `external_auth`). A user of the table authenticates with
 * its password under any enabled backend. A user NOT in the table
 * authenticates only under `auto` (Salt's always-approving test backend,
 * which the captures were made with) and then has no permissions: that is why
 * the captured publish for `nobody` is an AuthorizationError, not an
 * AuthenticationError. (Deviation: Salt's real `auto` would also accept a
 * wrong password for a known user; the double checks it, so tests can
 * exercise authentication failures.)
 */
import { randomBytes } from 'node:crypto';
import { validateTarget, type TargetableMinion } from './targeting.js';

/** An external_auth entry: a function regex, `@runner`/`@wheel`/`@<module>`, or `{target-or-@form: [conditions]}`. */
export type Permission = string | { [targetOrForm: string]: Array<string | Record<string, unknown>> };

export interface EauthUser {
  password: string;
  permissions: Permission[];
}

/** `saltdev` may do everything, `limited` only `test.*` on minions (passwords as in the captures). */
export function defaultUsers(): Record<string, EauthUser> {
  return {
    saltdev: { password: 'x', permissions: ['.*', '@runner', '@wheel', '@jobs'] },
    limited: { password: 'x', permissions: ['test.*'] },
  };
}

export interface TokenData {
  start: number;
  expire: number;
  name: string;
  eauth: string;
  token: string;
}

export interface SaltError {
  name: string;
  message: string;
}

export interface AuthCheck {
  authList: Permission[];
  username: string;
  error?: SaltError;
}

export type AuthType = 'token' | 'eauth' | 'user';

/** ClearFuncs._prep_auth_info: which credentials a load carries. */
export function prepAuthInfo(load: Record<string, unknown>): { authType: AuthType; errName: string; sensitive: string[] } {
  if ('token' in load) return { authType: 'token', errName: 'TokenAuthenticationError', sensitive: ['token'] };
  if ('eauth' in load) return { authType: 'eauth', errName: 'EauthAuthenticationError', sensitive: ['username', 'password'] };
  return { authType: 'user', errName: 'UserAuthenticationError', sensitive: [] };
}

/** Python's re.match(regex, text): anchored at the start only; an invalid regex matches nothing. */
export function matchCheck(regex: string, text: string): boolean {
  try {
    return new RegExp(`^(?:${regex})`).test(text);
  } catch {
    return false;
  }
}

export interface EauthOptions {
  users: Record<string, EauthUser>;
  backends: string[];
  tokenExpireS: number;
  /** Salt's time_auth makes every failure last about as long as the slowest one (≈1 s); 0 by default here. */
  failDelayMs: number;
  /** Sleeps that stop() can cancel. */
  sleep: (ms: number) => Promise<void>;
}

export class Eauth {
  readonly tokens = new Map<string, TokenData>();

  constructor(private readonly opts: EauthOptions) {}

  get users(): Record<string, EauthUser> {
    return this.opts.users;
  }

  private async fail(): Promise<false> {
    if (this.opts.failDelayMs > 0) await this.opts.sleep(this.opts.failDelayMs);
    return false;
  }

  /** LoadAuth.authenticate_eauth. */
  async authenticateEauth(load: Record<string, unknown>): Promise<boolean> {
    const eauth = load.eauth;
    if (typeof eauth !== 'string' || !this.opts.backends.includes(eauth)) return this.fail();
    const username = load.username;
    if (typeof username !== 'string') return this.fail(); // the backend's auth(username, password) can't be called
    const user = Object.prototype.hasOwnProperty.call(this.opts.users, username) ? this.opts.users[username] : undefined;
    if (user) return user.password === load.password ? true : this.fail();
    return eauth === 'auto' ? true : this.fail();
  }

  /** LoadAuth.get_tok: the token's data, or null when unknown or expired (expired tokens are removed). */
  getToken(token: unknown): TokenData | null {
    if (typeof token !== 'string') return null;
    const data = this.tokens.get(token);
    if (!data) return null;
    if (data.expire < Date.now() / 1000) {
      this.tokens.delete(token);
      return null;
    }
    return data;
  }

  /** LoadAuth.get_auth_list for a user name (the table's permissions; none for unknown users). */
  authList(name: string): Permission[] {
    return Object.prototype.hasOwnProperty.call(this.opts.users, name) ? [...this.opts.users[name].permissions] : [];
  }

  /** LoadAuth.check_authentication. The double has no local user keys, so the 'user' type always fails. */
  async checkAuthentication(load: Record<string, unknown>, authType: AuthType): Promise<AuthCheck> {
    const username = typeof load.username === 'string' ? load.username : 'UNKNOWN';
    if (authType === 'token') {
      const token = this.getToken(load.token);
      if (!token || !this.opts.backends.includes(token.eauth)) {
        await this.fail();
        return {
          authList: [],
          username,
          error: { name: 'TokenAuthenticationError', message: 'Authentication failure of type "token" occurred.' },
        };
      }
      return { authList: this.authList(token.name), username: token.name };
    }
    if (authType === 'eauth') {
      if (!(await this.authenticateEauth(load))) {
        return {
          authList: [],
          username,
          error: {
            name: 'EauthAuthenticationError',
            message: `Authentication failure of type "eauth" occurred for user ${username}.`,
          },
        };
      }
      return { authList: this.authList(String(load.username)), username };
    }
    await this.fail();
    return {
      authList: [],
      username,
      error: { name: 'UserAuthenticationError', message: 'Authentication failure of type "user" occurred' },
    };
  }

  /** ClearFuncs.mk_token: token data, or '' when authentication fails. */
  async mkToken(load: Record<string, unknown>): Promise<TokenData | ''> {
    if (!(await this.authenticateEauth(load))) return '';
    // A float for start and expire, as Python's time.time() always is (never packed as an int).
    const start = Date.now() / 1000 + 1e-7 + Math.random() * 1e-4;
    const data: TokenData = {
      start,
      expire: start + this.opts.tokenExpireS,
      name: String(load.username),
      eauth: String(load.eauth),
      token: randomBytes(32).toString('hex'),
    };
    this.tokens.set(data.token, data);
    return data;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** CkMinions.__args_check: `{args: [...], kwargs: {...}}` conditions (null = anything). */
function argsCheck(valid: unknown, args: unknown[] | undefined, kwargs: Record<string, unknown> | undefined): boolean {
  for (const cond of Array.isArray(valid) ? valid : [valid]) {
    if (!isObject(cond)) continue;
    let good = true;
    const condArgs = Array.isArray(cond.args) ? cond.args : [];
    condArgs.forEach((want, i) => {
      if (!good) return;
      if (!args || args.length <= i) good = false;
      else if (want !== null && !matchCheck(String(want), String(args[i]))) good = false;
    });
    if (!good) continue;
    for (const [k, want] of Object.entries(isObject(cond.kwargs) ? cond.kwargs : {})) {
      if (!kwargs || !(k in kwargs)) {
        good = false;
        break;
      }
      if (want !== null && !matchCheck(String(want), String(kwargs[k]))) {
        good = false;
        break;
      }
    }
    if (good) return true;
  }
  return false;
}

/** CkMinions.__fun_check. */
function funCheck(valid: unknown, fun: string, args?: unknown[], kwargs?: Record<string, unknown>): boolean {
  for (const cond of Array.isArray(valid) ? valid : [valid]) {
    if (typeof cond === 'string') {
      if (matchCheck(cond, fun)) return true;
    } else if (isObject(cond)) {
      const keys = Object.keys(cond);
      if (keys.length === 1 && matchCheck(keys[0], fun) && argsCheck(cond[keys[0]], args, kwargs)) return true;
    }
  }
  return false;
}

/** CkMinions.auth_check for a publish (find_job always allowed, as the master whitelists it). */
export function publishAuthorized(
  authList: Permission[],
  fun: unknown,
  arg: unknown,
  minions: string[],
  accepted: TargetableMinion[],
): boolean {
  if (typeof fun !== 'string') return false;
  if (fun === 'saltutil.find_job') return true;
  for (const entry of authList) {
    if (typeof entry === 'string') {
      if (matchCheck(entry, fun)) return true;
    } else if (isObject(entry)) {
      const keys = Object.keys(entry);
      if (keys.length !== 1) continue;
      if (!validateTarget(keys[0], minions, accepted)) continue;
      let funArgs = Array.isArray(arg) ? [...arg] : [];
      let funKwargs: Record<string, unknown> | undefined;
      const last = funArgs[funArgs.length - 1];
      if (isObject(last) && '__kwarg__' in last) {
        funKwargs = last;
        funArgs = funArgs.slice(0, -1);
      }
      if (funCheck(entry[keys[0]], fun, funArgs, funKwargs)) return true;
    }
  }
  return false;
}

/**
 * CkMinions.spec_check for runner and wheel: false (refused), true, or the
 * SaltInvocationError a malformed function name gets. Throws when `fun` is not
 * a string, as the master does (its reply is then the generic exception text).
 */
export function specCheck(authList: Permission[], fun: unknown, kwarg: unknown, form: 'runner' | 'wheel'): boolean | { error: SaltError } {
  if (authList.length === 0) return false;
  if (typeof fun !== 'string') throw new TypeError(`'${typeof fun}' object has no attribute 'split'`);
  const comps = fun.split('.');
  if (comps.length !== 2) {
    return { error: { name: 'SaltInvocationError', message: 'A command invocation error occurred: Check syntax.' } };
  }
  const [modName, funName] = comps;
  const args = isObject(kwarg) ? kwarg : {};
  for (const entry of authList) {
    if (typeof entry === 'string') {
      if (entry.startsWith('@') && (entry.slice(1) === modName || entry.slice(1) === form || entry === `@${form}s`)) return true;
    } else if (isObject(entry)) {
      const keys = Object.keys(entry);
      if (keys.length !== 1 || !keys[0].startsWith('@')) continue;
      const valid = keys[0];
      const a = Array.isArray(args.arg) ? args.arg : undefined;
      const k = isObject(args.kwarg) ? args.kwarg : undefined;
      if (valid.slice(1) === modName && funCheck(entry[valid], funName, a, k)) return true;
      if ((valid.slice(1) === form || valid === `@${form}s`) && funCheck(entry[valid], fun, a, k)) return true;
    }
  }
  return false;
}
