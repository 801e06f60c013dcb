/**
 * The master's configuration, read as Salt reads it (salt/config/__init__.py:
 * master_config): the YAML file, its includes, Salt's defaults for the
 * options we use, and root_dir prepended to the directories.
 *
 * STUB: signatures agreed between modules; the transport work fills it in.
 */

/** The master options this server uses, after defaults (DEFAULT_MASTER_OPTS). */
export interface MasterOptions {
  conf_file: string;
  root_dir: string;
  interface: string;
  ret_port: number;
  sock_dir: string;
  cachedir: string;
  pki_dir: string;
  ipc_mode: string; // 'ipc' | 'tcp'
  tcp_master_pub_port: number;
  transport: string; // 'zeromq' | 'tcp'
  timeout: number; // seconds (may be fractional in tests)
  gather_job_timeout: number; // seconds
  netapi_enable_clients: string[];
  netapi_allow_raw_shell: boolean;
  rest_wsgi?: { port?: number; host?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Read the master config file: `path`, else env SALT_MASTER_CONFIG, else /etc/salt/master. Throws ConfigError (one line, naming the file). */
export function loadMasterConfig(path?: string): MasterOptions {
  throw new Error('not implemented');
}

/** Apply Salt's defaults (and root_dir) to options given as an object, as if read from a file. */
export function applyMasterDefaults(options: Partial<MasterOptions>): MasterOptions {
  throw new Error('not implemented');
}
