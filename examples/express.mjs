import express from 'express';
import { ConfigError, createHandler } from 'salt-rest-wsgi';

let handler; // on $SALT_MASTER_CONFIG, else /etc/salt/master
try {
  handler = createHandler({ logger: console, accessLog: true });
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`${err.message.split('\n')[0]}; set SALT_MASTER_CONFIG to the master's config file`);
  process.exit(2);
}
const app = express();
// Every path under /salt. Mounted before any body parser, the handler reads
// the body itself and keeps integers past 2^53 exact; after express.json()
// it takes req.body as parsed.
app.use('/salt', handler);

const server = app.listen(Number(process.env.PORT ?? 8001), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/salt`);
});
process.once('SIGTERM', () => server.close(() => handler.close()));
