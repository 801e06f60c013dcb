import { ConfigError, HttpError, NetapiClient, loadMasterConfig } from 'salt-rest-wsgi';

// The dispatcher without HTTP: one lowstate item in, its result out. A refusal
// throws the HttpError the handler would answer with (its status and message).
// It reads SALT_MASTER_CONFIG (else /etc/salt/master), SALT_EAUTH (else pam),
// SALT_USER and SALT_PASSWORD.
const { SALT_EAUTH = 'pam', SALT_USER, SALT_PASSWORD } = process.env;
if (!SALT_USER || !SALT_PASSWORD) {
  console.error('set SALT_USER and SALT_PASSWORD (and SALT_EAUTH, default pam) to an eauth user of the master');
  process.exit(2);
}
let netapi;
try {
  netapi = new NetapiClient(loadMasterConfig());
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`${err.message.split('\n')[0]}; set SALT_MASTER_CONFIG to the master's config file`);
  process.exit(2);
}
try {
  const result = await netapi.run({
    client: 'local',
    tgt: '*',
    fun: 'test.ping',
    eauth: SALT_EAUTH,
    username: SALT_USER,
    password: SALT_PASSWORD,
  });
  console.log(JSON.stringify(result));
} catch (err) {
  if (!(err instanceof HttpError)) throw err;
  console.error(`refused: ${err.status} ${err.message}`); // e.g. 401 Authentication error occurred.
  process.exitCode = 1;
} finally {
  netapi.close();
}
