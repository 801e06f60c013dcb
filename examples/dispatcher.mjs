import { HttpError, NetapiClient, loadMasterConfig } from 'salt-rest-wsgi';

// The dispatcher without HTTP: one lowstate item in, its result out. A refusal
// throws the HttpError the handler would answer with (its status and message).
const netapi = new NetapiClient(loadMasterConfig()); // $SALT_MASTER_CONFIG, else /etc/salt/master
try {
  const result = await netapi.run({
    client: 'local',
    tgt: '*',
    fun: 'test.ping',
    eauth: 'pam',
    username: process.env.SALT_USER,
    password: process.env.SALT_PASSWORD,
  });
  console.log(JSON.stringify(result));
} catch (err) {
  if (!(err instanceof HttpError)) throw err;
  console.error(`refused: ${err.status} ${err.message}`); // e.g. 401 Authentication error occurred.
  process.exitCode = 1;
} finally {
  netapi.close();
}
