/**
 * A master double and a dispatcher configured from its config file, the
 * dispatcher's bus already connected: the fixture of the dispatcher tests.
 */
import { NetapiClient } from '../../lib/clients/netapi.js';
import { loadMasterConfig } from '../../lib/salt/config.js';
import { startMaster, type MasterDoubleOptions, type SaltMasterDouble } from './master.js';

export interface MasterAndNetapi {
  master: SaltMasterDouble;
  netapi: NetapiClient;
  /** Close the dispatcher, then the master. */
  close(): Promise<void>;
}

export async function startMasterAndNetapi(options: MasterDoubleOptions = {}): Promise<MasterAndNetapi> {
  const master = await startMaster(options);
  const netapi = new NetapiClient(loadMasterConfig(master.configPath));
  await master.waitForBusClients(1);
  return {
    master,
    netapi,
    async close() {
      netapi.close();
      await master.close();
    },
  };
}
