import http from 'node:http';
import { ConfigError, createHandler } from 'salt-rest-wsgi';

// Reads $SALT_MASTER_CONFIG, else /etc/salt/master (or pass `config`: a path or an object of options).
let handler;
try {
  handler = createHandler({ logger: console, accessLog: true });
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`${err.message.split('\n')[0]}; set SALT_MASTER_CONFIG to the master's config file`);
  process.exit(2);
}
const server = http.createServer(handler); // node:https: https.createServer({ key, cert }, handler)

server.listen(Number(process.env.PORT ?? 8001), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/`);
});
// Finish the running requests, then release the sockets to the master.
process.once('SIGTERM', () => server.close(() => handler.close()));
