/**
 * Which accepted minions a target names, as the master's CkMinions.check_minions
 * (salt/utils/minions.py) answers it, over the double's minion table.
 *
 * Implemented: glob (fnmatch: `*`, `?`, `[seq]`, `[!seq]`), pcre (re.match,
 * anchored at the start only), list (array or comma string; unknown names go
 * to `missing`), grain and grain_pcre (`key:pattern`, nested keys by the
 * delimiter), compound (`and`/`or`/`not`/parentheses over bare globs, L@, E@,
 * G@, P@; pillar, ipcidr and nodegroup words match nothing). Every other
 * tgt_type (pillar, nodegroup, ipcidr, range, ...) is treated as a glob on ids.
 */

export interface TargetableMinion {
  id: string;
  grains: Record<string, unknown>;
}

/** Python's fnmatch.translate, for one pattern: a full, case-sensitive match. */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      let j = i + 1;
      if (pattern[j] === '!') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j++;
      if (j >= pattern.length) out += '\\[';
      else {
        let body = pattern.slice(i + 1, j).replace(/\\/g, '\\\\');
        if (body.startsWith('!')) body = '^' + body.slice(1);
        else if (body.startsWith('^')) body = '\\' + body;
        out += `[${body}]`;
        i = j;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^(?:${out})$`, 's');
}

/** Python's re.match: anchored at the start, not at the end. Invalid patterns match nothing. */
function pcre(pattern: string): RegExp | null {
  try {
    return new RegExp(`^(?:${pattern})`);
  } catch {
    return null;
  }
}

function lookupGrain(grains: Record<string, unknown>, key: string, delimiter: string): unknown {
  let node: unknown = grains;
  for (const part of key.split(delimiter)) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function grainMatches(m: TargetableMinion, expr: string, delimiter: string, regex: boolean): boolean {
  const cut = expr.lastIndexOf(delimiter);
  if (cut <= 0) return false;
  const value = lookupGrain(m.grains, expr.slice(0, cut), delimiter);
  const pattern = expr.slice(cut + delimiter.length);
  const test = regex ? pcre(pattern) : globToRegExp(pattern);
  if (!test) return false;
  const values = Array.isArray(value) ? value : [value];
  return values.some((v) => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && test.test(String(v)));
}

function listOf(tgt: unknown): string[] {
  if (Array.isArray(tgt)) return tgt.map(String);
  if (typeof tgt === 'string') return tgt.split(',').filter((x) => x);
  return [];
}

function compoundWord(m: TargetableMinion, word: string, delimiter: string): boolean {
  const engine = /^([A-Z])@(.*)$/s.exec(word);
  if (!engine) return globToRegExp(word).test(m.id);
  const [, kind, rest] = engine;
  switch (kind) {
    case 'L':
      return listOf(rest).includes(m.id);
    case 'E':
      return pcre(rest)?.test(m.id) ?? false;
    case 'G':
      return grainMatches(m, rest, delimiter, false);
    case 'P':
      return grainMatches(m, rest, delimiter, true);
    default:
      return false; // pillar, ipcidr, nodegroup, range: the double has none
  }
}

/** Evaluate a compound target for one minion (or = lowest precedence, then and, then not). */
function compoundMatches(m: TargetableMinion, expr: string, delimiter: string): boolean {
  const tokens = expr
    .replace(/\(/g, ' ( ')
    .replace(/\)/g, ' ) ')
    .split(/\s+/)
    .filter((t) => t);
  let pos = 0;
  const parseOr = (): boolean => {
    let value = parseAnd();
    while (tokens[pos] === 'or') {
      pos++;
      value = parseAnd() || value;
    }
    return value;
  };
  const parseAnd = (): boolean => {
    let value = parseNot();
    while (tokens[pos] === 'and') {
      pos++;
      value = parseNot() && value;
    }
    return value;
  };
  const parseNot = (): boolean => {
    const token = tokens[pos++];
    if (token === 'not') return !parseNot();
    if (token === '(') {
      const value = parseOr();
      pos++; // ')'
      return value;
    }
    return token !== undefined && compoundWord(m, token, delimiter);
  };
  return tokens.length > 0 && parseOr();
}

/** `{minions, missing}` for a target, in the order of the minion table (list: in the target's order). */
export function checkMinions(
  tgt: unknown,
  tgtType: string,
  accepted: TargetableMinion[],
  delimiter = ':',
): { minions: string[]; missing: string[] } {
  switch (tgtType) {
    case 'list': {
      const names = listOf(tgt);
      const ids = new Set(accepted.map((m) => m.id));
      return { minions: names.filter((n) => ids.has(n)), missing: names.filter((n) => !ids.has(n)) };
    }
    case 'pcre': {
      const re = typeof tgt === 'string' ? pcre(tgt) : null;
      return { minions: re ? accepted.filter((m) => re.test(m.id)).map((m) => m.id) : [], missing: [] };
    }
    case 'grain':
    case 'grain_pcre':
      return {
        minions:
          typeof tgt === 'string' ? accepted.filter((m) => grainMatches(m, tgt, delimiter, tgtType === 'grain_pcre')).map((m) => m.id) : [],
        missing: [],
      };
    case 'compound':
      return {
        minions: typeof tgt === 'string' ? accepted.filter((m) => compoundMatches(m, tgt, delimiter)).map((m) => m.id) : [],
        missing: [],
      };
    default: {
      // glob, and every tgt_type the double does not model
      if (typeof tgt !== 'string') return { minions: [], missing: [] };
      const re = globToRegExp(tgt);
      return { minions: accepted.filter((m) => re.test(m.id)).map((m) => m.id), missing: [] };
    }
  }
}

/** Whether every minion of `minions` is among those `validTarget` (a compound expression) names: CkMinions.validate_tgt. */
export function validateTarget(validTarget: string, minions: string[], accepted: TargetableMinion[]): boolean {
  const allowed = new Set(checkMinions(validTarget, 'compound', accepted).minions);
  return minions.every((m) => allowed.has(m));
}
