import { NetapiClient, loadMasterConfig } from 'salt-rest-wsgi';

// The dispatcher without HTTP: one lowstate item in, its result out. A refusal
// throws the error the handler would answer with (err.status, err.message).
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
} finally {
  netapi.close();
}
