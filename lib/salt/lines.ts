/**
 * The Salt release lines this client speaks to, each with the release and
 * transports it was checked against (README: Tests). The wire protocol is
 * the same across a line (salt/payload.py, salt/crypt.py); `ws` came with
 * 3007 (salt/transport/ws.py).
 */
export interface SaltLine {
  line: string;
  checked: string;
  transports: readonly string[];
}

export const SALT_LINES: readonly SaltLine[] = [
  { line: '3007', checked: '3007.1', transports: ['zeromq', 'tcp', 'ws'] },
  { line: '3006', checked: '3006.0', transports: ['zeromq'] },
];
